"""Clean stops: SIGINT (Ctrl-C) or SIGTERM ends a training run without losing it.

The first signal asks the run to stop: it takes no new work, cancels the generation and scoring
in flight (rustc jobs are killed with their process groups, teacher requests are dropped), lets an
update that has started finish, writes a checkpoint and exits 0, printing the command that
resumes. A second signal quits at once, without a checkpoint (the last one written stays valid).

With several processes (`accelerate launch`) nothing is cancelled mid-step, because every process
must reach the same collective operations: each one only notes the signal, and the main process's
decision to stop is broadcast at the end of the step.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from rich.console import Console

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by the first SIGINT/SIGTERM; cancels the cancellable section in progress, if any."""

    def __init__(self, console: Console, cancel_in_flight: bool = True):
        self.console = console
        self.cancel_in_flight = cancel_in_flight
        self.signal: str | None = None  # the signal's name once one arrived
        self._scope: anyio.CancelScope | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def requested(self) -> bool:
        """For polling from worker threads (generation stops at the next token)."""
        return self.signal is not None and self.cancel_in_flight

    @contextmanager
    def cancellable(self) -> Iterator[anyio.CancelScope]:
        """A section a stop may cancel: work whose result is dropped when the run stops."""
        with anyio.CancelScope() as scope:
            if self.signal is not None and self.cancel_in_flight:
                scope.cancel()
            self._scope = scope
            try:
                yield scope
            finally:
                self._scope = None

    async def watch(self) -> None:
        """Receive signals until cancelled (run this in the pipeline's task group)."""
        with anyio.open_signal_receiver(*SIGNALS) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if self.signal is not None:
                    self.console.print(f"{name} again: quitting now, without a checkpoint")
                    signal.signal(signum, signal.SIG_DFL)
                    os.kill(os.getpid(), signum)
                    return
                self.signal = name
                self.console.print(
                    f"{name}: stopping cleanly (no new work; a checkpoint follows the update in "
                    "progress); send it again to quit at once"
                )
                if self._scope is not None and self.cancel_in_flight:
                    self._scope.cancel()
