"""The ``sreels`` command: a thin layer over the library.

Each subcommand lives next to the code it drives and provides two functions,
``configure(parser)`` and ``run(args) -> int``; this module only wires them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from . import __version__
from . import signals
from .errors import EXIT_FAILURE, EXIT_INPUT, SreelsInputError

# subcommand -> (module, one-line help)
COMMANDS = {
    "simulate": ("sreels.forward.commands:simulate", "simulate SR-EELS spectrum images from a scenario"),
    "fit": ("sreels.inference.commands:fit", "invert a spectrum image into Li, Ti3+ and O-O profiles"),
    "calibrate": ("sreels.structures.commands:calibrate", "fit the O-K resonance rule dE*R^2 = C"),
    "structures": ("sreels.structures.commands:structures", "O-O distances of crystal structures"),
    "plan": ("sreels.plan.commands:plan", "predict the precision of every number, and the dose a target needs"),
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
    """Run one ``sreels`` command; returns its exit code (see :mod:`sreels.errors`).

    Bad input is one line on stderr and exit 2; SIGINT/SIGTERM clean up and exit 130/143
    with one line; an operating-system failure or an unexpected error is one line and exit 1
    (``SREELS_DEBUG=1`` shows the traceback).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_INPUT
    previous = _install_signals()
    try:
        rc = _run(args)
        sig = signals.pending()
        if sig is not None and rc != signals.exit_code(sig):  # its exception was swallowed (a C extension)
            rc = _interrupted(args, sig)
        return rc
    finally:
        _restore_signals(previous)


def _run(args) -> int:
    prog = f"sreels {args.command}"
    try:
        return int(args._run(args) or 0)
    except signals.Interrupted as exc:
        return _interrupted(args, exc.signum)
    except KeyboardInterrupt:
        return _interrupted(args, signal.SIGINT)
    except SreelsInputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # output piped into head & co.: stop quietly, as Unix tools do
        sys.stderr.close()
        return 141
    except MemoryError:
        print(f"{prog}: error: out of memory; use a smaller image, --chunk-rows for sreels fit, or a machine "
              "with more memory", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"{prog}: error: {exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}",
              file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - one line for the user; the traceback on request
        if os.environ.get("SREELS_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} (please report it; SREELS_DEBUG=1 shows "
              "the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def _interrupted(args, signum) -> int:
    name = signal.Signals(signum).name
    print(f"sreels {args.command}: interrupted by {name}; no partial output left", file=sys.stderr)
    return signals.exit_code(signum)


def _install_signals():
    try:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        signals.install()
    except ValueError:  # not the main thread (an embedding application): leave its handlers alone
        return None
    return previous


def _restore_signals(previous) -> None:
    if previous:
        for s, h in previous.items():
            signal.signal(s, h)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
