"""Named step boundaries of multi-step operations, where a crash test can kill the process.

``MMALIGN_CRASH_AT=STEP`` (or ``STEP:N``, the N-th time that step is reached) makes
:func:`crash_point` SIGKILL the process there: tests inject kills without editing code. Unset, a
crash point costs one environment look-up.
"""

from __future__ import annotations

import os
import signal

ENV = "MMALIGN_CRASH_AT"
_reached: dict[str, int] = {}


def crash_point(step: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != step:
        return
    _reached[step] = _reached.get(step, 0) + 1
    if _reached[step] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
