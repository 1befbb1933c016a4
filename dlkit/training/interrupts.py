"""Ctrl-C during ``fit``, held until the compiled program in flight has returned its state.

The training programs donate the state's buffers to XLA, so a ``KeyboardInterrupt``
raised between a dispatch and the assignment of its result would leave the trainer
with deleted arrays. Inside ``deferred()`` the first Ctrl-C only marks the run as
interrupted; the loop calls ``check()`` after each program and raises there, with
the state of the last completed step in place. A second Ctrl-C stops at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupt:
    """Whether a Ctrl-C arrived; ``check()`` raises it at a point where the state is whole."""

    def __init__(self):
        self.pending = False

    def check(self) -> None:
        """Raise the held ``KeyboardInterrupt``, if any.

        Raises:
          KeyboardInterrupt: if a Ctrl-C arrived since the context was entered.
        """
        if self.pending:
            raise KeyboardInterrupt("fit() interrupted; trainer.state holds the last completed step.")


NONE = Interrupt()  # outside fit: never pending


@contextlib.contextmanager
def deferred() -> Iterator[Interrupt]:
    """Hold Ctrl-C (SIGINT) while the block runs; yields the ``Interrupt`` to ``check()``.

    Outside the main thread, or where the program installed its own SIGINT handler, the
    handler is left alone and nothing is held.

    Yields:
      The ``Interrupt`` whose ``pending`` the first Ctrl-C sets (never set where nothing is held).
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield Interrupt()
        return
    interrupt = Interrupt()

    def handler(signum, frame):
        if interrupt.pending:
            raise KeyboardInterrupt
        interrupt.pending = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
