"""Stop signals: SIGINT or SIGTERM ends training at a step boundary with a checkpoint; a second, at once."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import torch

from edge_vsd.distributed import any_process

STOP_CHECK_EVERY = 16  # steps between the torchrun processes' agreement on a stop signal


class Stopped(KeyboardInterrupt):
    """Training ended by SIGINT or SIGTERM; `exit_code` is 128 + the signal number, as a shell reports."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (Slurm, Kubernetes) alike: in the step loop the first is recorded and the
    loop stops at the next step boundary; a second one, or one before the loop, raises `Stopped` at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferring = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) != signal.SIG_IGN:  # ignored (nohup, say): the caller's choice
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.deferring and self.signum is None:
            self.signum = signum
            print(
                f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint "
                "(send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        raise Stopped(signum, f"{signal.Signals(signum).name}: stopped at once")

    def defer(self) -> None:
        self.deferring = True

    def requested(self, world: int, device: torch.device, step: int) -> bool:
        """Whether any process got a stop signal. Under torchrun the processes agree every
        STOP_CHECK_EVERY steps (an all-reduce waits for the GPU, so not every step) and stop together."""
        if world == 1:
            return self.signum is not None
        if step % STOP_CHECK_EVERY:
            return False
        signum = any_process(self.signum or 0, device)
        self.signum = self.signum or signum or None
        return self.signum is not None


def ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the training process, which finishes its step (a dead worker
    would break that step's batch) and then shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
