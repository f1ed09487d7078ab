"""The `ase-mllm` console script: ase_model.cli's commands plus `demo` and `cull`.

`demo` drives the whole product (daemon, client, XMP sidecars), so it lives in the daemon package, which may
import ase_model; ase_model itself never imports ase_daemon (no loop between packages). This front only adds
`demo` and `cull` (cull_cli.py: it writes sidecars and uses the store) to ase_model.cli's parser and hands
everything to ase_model.cli.main; `ase-mllm --help` imports no torch.
"""

from __future__ import annotations

import sys

from ase_model import cli

from .contract import OP_CULL

DEMO_HELP = "critique sample photos through the daemon into an HTML report"
CULL_HELP = "group bursts, pick the best frame of each, flag the rejects, with reasons (--apply: into the sidecars)"


# `critique` keeps ase_model.cli's arguments and adds the store (a rerun skips what is done), --write-xmp and
# --format lines, which need this package (critique_cli.py)
FRONTS = {"critique": "ase_daemon.critique_cli"}


def build_parser():
    """ase_model.cli's parser with `demo` and `cull` listed (their own parsers handle their arguments)."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse has no public getter for it
    sub.add_parser("demo", help=DEMO_HELP, add_help=False)
    sub.add_parser(OP_CULL, help=CULL_HELP, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs `ase-mllm`.

    Args:
        argv: the arguments (default: sys.argv[1:]).
    """
    return cli.main(argv, parser=build_parser(), delegated={**cli.DELEGATED, "demo": "ase_daemon.demo",
                                                              OP_CULL: "ase_daemon.cull_cli", **FRONTS})


__all__ = ["build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
