"""SIGINT and SIGTERM: stop cleanly, leave nothing behind, never swallow the signal.

:func:`install` makes both signals raise :class:`Interrupted` (a ``KeyboardInterrupt``, so
every ``except BaseException`` clean-up runs) and records the signal.  Code that may have
swallowed the exception (a C extension's callback) is caught by :func:`raise_if_pending`,
which :func:`sreels.outdir.output_directory` calls before it publishes a result, and by
the command line, which exits ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM)
whenever a signal arrived.
"""

from __future__ import annotations

import contextlib
import signal

_pending: int | None = None
_deferred = False


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handler(signum, frame):
    global _pending
    if _pending is not None:  # a second signal during the clean-up: let the clean-up finish
        return
    _pending = signum
    if not _deferred:
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred():
    """Within the block a signal is recorded, not raised: for steps whose result must be known before
    it can be cleaned up (a temporary folder being created); the caller then calls
    :func:`raise_if_pending` where the clean-up is in place."""
    global _deferred
    old, _deferred = _deferred, True
    try:
        yield
    finally:
        _deferred = old


def install() -> None:
    """Handle SIGINT and SIGTERM in this process (call from the main thread)."""
    global _pending
    _pending = None
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def pending() -> int | None:
    """The signal number received since :func:`install`, or None."""
    return _pending


def raise_if_pending() -> None:
    """Raise :class:`Interrupted` if a signal arrived (even if its exception was swallowed)."""
    if _pending is not None:
        raise Interrupted(_pending)


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number."""
    return 128 + int(signum)
