"""Graceful stop on SIGINT / SIGTERM / SIGUSR1: finish the step, checkpoint, exit 0.

The handler only records the request; the training loop polls :attr:`StopRequest.signal_name` after
each step, agrees on it across ranks (one rank receiving the signal stops all of them at the same
step), writes a checkpoint and returns. A second SIGINT while a stop is pending raises
``KeyboardInterrupt`` at once (the impatient Ctrl-C), without a checkpoint: a checkpoint write it
cuts short leaves the previous checkpoint intact, and ``sie train`` exits 130, "interrupted".

SIGTERM is what ``torchrun`` forwards to its workers and what SLURM sends before the time limit
(``#SBATCH --signal=TERM@300``); SIGUSR1 is the reference's SLURM pre-emption signal.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["STOP_SIGNALS", "StopRequest"]

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """Context manager that installs the stop handlers and restores the previous ones on exit.

    Outside the main thread (where Python cannot install handlers) it installs nothing and never
    reports a request.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.aborted = False  # a second SIGINT raised KeyboardInterrupt
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            # Raised wherever the main thread is; inside a checkpoint write torch may rewrap it (a
            # RuntimeError), so ``aborted`` lets the loop report an interruption whatever it became.
            self.aborted = True
            raise KeyboardInterrupt
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
