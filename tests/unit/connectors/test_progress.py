"""Long work prints where the user can see it: a bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from mmalign.connectors import progress as progress_module
from mmalign.connectors.progress import Progress


def test_without_a_terminal_a_line_comes_at_least_every_interval(monkeypatch):
    clock = iter([0.0, 3.0, 11.0, 12.0, 25.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = Progress(100, "features image", stream=out, tty=False, every_s=10)
    bar.update(10)  # t=3: too soon
    bar.update(30)  # t=11: a line
    bar.update(10)  # t=12: too soon
    bar.update(50)  # t=25: a line
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("features image: 40/100 item (40 %)") and "s left" in lines[0]
    assert lines[1].startswith("features image: 100/100 item (100 %)")


def test_an_unknown_total_still_says_how_far_and_how_fast():
    out = io.StringIO()
    with Progress(None, "teacher", unit="epoch", stream=out, tty=False, every_s=0) as bar:
        bar.update(3)
    assert out.getvalue().splitlines()[0].startswith("teacher: 3 epoch, ")


def test_a_short_stage_prints_nothing_off_a_terminal():
    out = io.StringIO()
    with Progress(5, "ingest", stream=out, tty=False) as bar:
        bar.update(5)
    assert out.getvalue() == ""
