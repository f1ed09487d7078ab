"""Checkpoints: the run state saved with each one, finding one to resume, pruning, and the log cut back to it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .args import (
    CHECKPOINTS_DIR,
)

# ----------------------------------------------------------------------------------------------------------
# checkpoints


class TrainState:
    """Where the run is (saved with each checkpoint through accelerate's register_for_checkpointing)."""

    def __init__(self):
        self.step = 0  # optimizer steps done
        self.epoch = 0
        self.batches_in_epoch = 0  # micro-batches of `epoch` already consumed (per process)
        self.samples = 0  # samples seen, all processes
        self.skipped = 0  # unreadable images skipped (main process's count)

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def find_checkpoint(out: Path, resume: str) -> Path:
    if resume != "latest":
        path = Path(resume)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume {resume}: no checkpoint folder there")
        return path
    found = sorted((int(m.group(1)), p) for p in (out / CHECKPOINTS_DIR).glob("step-*")
                   if (m := re.fullmatch(r"step-(\d+)", p.name)) and p.is_dir())
    if not found:
        raise FileNotFoundError(f"--resume latest: no checkpoint in {out / CHECKPOINTS_DIR}")
    return found[-1][1]


def _prune_checkpoints(out: Path, keep: int) -> None:
    found = sorted((int(m.group(1)), p) for p in (out / CHECKPOINTS_DIR).glob("step-*")
                   if (m := re.fullmatch(r"step-(\d+)", p.name)))
    for _, path in found[: max(0, len(found) - keep)]:
        shutil.rmtree(path, ignore_errors=True)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the step a resumed run restarts from (they will be logged again)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            pass
    path.write_text("".join(line + "\n" for line in keep))


