"""The `ase-mllm` console script: ase_model.cli's commands plus `demo`.

`demo` drives the whole product (daemon, client, XMP sidecars), so it lives in the daemon package, which may
import ase_model; ase_model itself never imports ase_daemon (no loop between packages). This front only adds
`demo` to ase_model.cli's parser and hands everything to ase_model.cli.main; `ase-mllm --help` imports no torch.
"""

from __future__ import annotations

import sys

from ase_model import cli

DEMO_HELP = "critique sample photos through the daemon into an HTML report"


def build_parser():
    """ase_model.cli's parser with `demo` listed (its own parser in ase_daemon.demo handles its arguments)."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse has no public getter for it
    sub.add_parser("demo", help=DEMO_HELP, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs `ase-mllm`.

    Args:
        argv: the arguments (default: sys.argv[1:]).
    """
    return cli.main(argv, parser=build_parser(), delegated={**cli.DELEGATED, "demo": "ase_daemon.demo"})


__all__ = ["build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
