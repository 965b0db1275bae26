"""The ``sreels`` command: a thin layer over the library.

Each subcommand lives next to the code it drives and provides two functions,
``configure(parser)`` and ``run(args) -> int``; this module only wires them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import SreelsInputError

# subcommand -> (module, one-line help)
COMMANDS = {
    "simulate": ("sreels.forward.commands:simulate", "simulate SR-EELS spectrum images from a scenario"),
    "fit": ("sreels.inference.commands:fit", "invert a spectrum image into Li, Ti3+ and O-O profiles"),
    "calibrate": ("sreels.structures.commands:calibrate", "fit the O-K resonance rule dE*R^2 = C"),
    "structures": ("sreels.structures.commands:structures", "O-O distances of crystal structures"),
    "demo": ("sreels.demo:demo", "simulate the source study's interface, invert it and report"),
}


def _load(spec: str):
    mod, prefix = spec.split(":")
    m = importlib.import_module(mod)
    return getattr(m, f"configure_{prefix}"), getattr(m, f"run_{prefix}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (keeps ``sreels --help`` instant)."""
    parser = argparse.ArgumentParser(
        prog="sreels",
        description="Spatially-resolved EELS of battery interfaces (Li-K, Ti-L2,3, O-K).",
    )
    parser.add_argument("--version", action="version", version=f"sreels {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (spec, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            configure, run = _load(spec)
            configure(p)
            p.set_defaults(_run=run)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except SreelsInputError as exc:
        print(f"sreels {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.: stop quietly, as Unix tools do
        sys.stderr.close()
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
