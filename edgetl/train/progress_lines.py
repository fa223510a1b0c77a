"""Training progress for logs: plain lines when stdout is not a terminal (CI, nohup, `edgetl train ... > log`).

A rich progress bar redraws itself in place; written to a file it shows only once, when it stops, and a run
looks hung for the whole epoch. Here a line goes out every `every_frac` of an epoch or every `every_s`
seconds, whichever comes first (step, examples/s, running loss, time left in the epoch), and one line per
finished epoch; each is flushed at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def wants_plain_lines(stream=None) -> bool:
    """True when `stream` (stdout by default) is not an interactive terminal."""
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def _clock_text(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class PlainProgress:
    """`start_epoch`, `step` after each optimizer step, `end_epoch`: the lines a log file gets."""

    def __init__(
        self,
        epochs: int,
        steps_per_epoch: int,
        *,
        every_s: float = 30.0,
        every_frac: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        out=None,
    ):
        self.epochs, self.steps = epochs, max(1, steps_per_epoch)
        self.every_s, self.every_steps = every_s, max(1, int(every_frac * self.steps))
        self.clock, self._out = clock, out

    def _print(self, line: str) -> None:
        out = self._out if self._out is not None else sys.stdout  # read at call time: redirection, capture
        out.write(line + "\n")
        out.flush()

    def start_epoch(self, epoch: int, first_step: int = 0) -> None:
        self.epoch, self.first = epoch, first_step
        self.t0 = self.last_t = self.clock()
        self.last_step, self.examples = first_step, 0

    def step(self, step: int, examples: int, loss: float | None) -> None:
        """After optimizer step `step` (1-based within the epoch) that took `examples` rows."""
        self.examples += examples
        now = self.clock()
        if step < self.steps and step - self.last_step < self.every_steps and now - self.last_t < self.every_s:
            return
        self.last_step, self.last_t = step, now
        took = now - self.t0
        done = step - self.first
        rate = f"{self.examples / took:.1f} ex/s" if took > 0 else "- ex/s"
        eta = _clock_text(took / done * (self.steps - step)) if done > 0 else "-"
        loss_s = f"loss {loss:.4f}" if loss is not None else "loss -"
        self._print(
            f"epoch {self.epoch + 1}/{self.epochs} step {step}/{self.steps} ({100 * step / self.steps:.0f}%) "
            f"{rate} {loss_s} ETA {eta}"
        )

    def end_epoch(self, row: dict, val: str) -> None:
        self._print(
            f"epoch {row['epoch']}/{self.epochs} done in {_clock_text(self.clock() - self.t0)}: "
            f"train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, val {val}"
        )
