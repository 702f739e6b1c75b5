"""Progress of long work (features, training, ingest) that a user can see wherever the output goes.

On a terminal: a tqdm bar. Anywhere else (a log file, CI, a service job): one plain line at least every
``every_s`` seconds — stage, done/total, rate and time left — so a run is never silent for minutes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds between two progress lines when the output is not a terminal.
LINE_EVERY_S = 10.0


class Progress:
    """``update(n)`` as work is done; ``close()`` (or ``with``) at the end. ``total`` may be unknown."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "item",
        stream: TextIO | None = None,
        tty: bool | None = None,
        every_s: float = LINE_EVERY_S,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.done = 0
        self.started = self._last = time.monotonic()
        tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self._bar = None
        if tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line(now)

    def line(self) -> str:
        """The progress line as printed: ``desc: done/total unit (pct) rate/s, ETA``."""
        return self._format(time.monotonic())

    def _format(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta = f", about {left:.0f} s left" if left != float("inf") else ""
            share = f" ({100 * self.done / self.total:.0f} %)"
            return f"{self.desc}: {self.done}/{self.total} {self.unit}{share}, {rate:.1f}/s{eta}"
        return f"{self.desc}: {self.done} {self.unit}, {rate:.1f}/s, {elapsed:.0f} s"

    def _line(self, now: float) -> None:
        print(self._format(now), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.done and time.monotonic() - self.started >= self.every_s:
            self._line(time.monotonic())  # the last line of a long stage: where it ended

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
