"""One daemon for the whole hostile suite (starting one costs more than most of its tests)."""

from __future__ import annotations

import signal

import pytest
from conftest import DaemonProcess

BUDGET_MB = 512
CONFIG = f"""
[limits]
decode_budget_mb = {BUDGET_MB}
max_file_mb = 64

[watch]
settle_s = 0.2
poll_interval_s = 0.3
open_wait_s = 30
rescan_s = 30
incomplete_timeout_s = 3
"""


@pytest.fixture(scope="package")
def hostile_daemon(tmp_path_factory, tiny_model_dir):
    """A daemon with a 512 MiB decode budget and a 64 MiB file cap; folders are watched by each test."""
    d = DaemonProcess(tmp_path_factory.mktemp("hostile-daemon"), tiny_model_dir, "h",
                      ["--max-batch", "8", "--batch-window-ms", "30"], config=CONFIG)
    d.start()
    yield d
    assert d.stop(signal.SIGTERM) == 0
