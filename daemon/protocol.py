"""The wire protocol's older name: everything here is `ase_daemon.contract` (kept so `from ase_daemon import
protocol as P` in scripts, benchmarks and tests goes on working)."""

from .contract import *  # noqa: F403
from .contract import __all__  # noqa: F401
