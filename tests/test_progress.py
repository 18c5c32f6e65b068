"""Progress display: plain lines when output is not a terminal; client notices shown."""

from __future__ import annotations

import io
import time

from rich.console import Console

from longreward._progress import PlainProgress, format_duration, stage_progress


def snapshot() -> dict:
    return {"requests": 12, "cache_hits": 3, "prompt_tokens": 1000, "completion_tokens": 200,
            "failures": 1, "unscored": 0, "cost_usd": None,
            "notices": ["http://judge:8000/v1 (model m) not answering for 42s"]}


def test_plain_lines_every_n_seconds_when_not_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=300)
    with stage_progress("score", console=console, stats=snapshot, every=0.1) as bar:
        assert isinstance(bar, PlainProgress)
        bar.start(10, 2)
        bar.advance(3)
        deadline = time.monotonic() + 10  # nothing completes meanwhile: lines keep coming
        while out.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [x for x in out.getvalue().splitlines() if x.strip()]
    assert len(lines) >= 3  # periodic lines and a last one
    last = lines[-1]
    assert last.startswith("score: 5/10 (50%)")
    assert "calls 12" in last and "tok 1,200" in last and "not answering for 42s" in last
    assert "\x1b[" not in out.getvalue()  # plain text, no escape codes


def test_disabled_progress_prints_nothing() -> None:
    out = io.StringIO()
    with stage_progress("score", console=Console(file=out), enabled=False,
                        stats=snapshot) as bar:
        bar.start(3)
        bar.advance()
    assert out.getvalue() == ""


def test_terminal_bar_shows_the_notices_while_nothing_completes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=250)
    with stage_progress("score", console=console, stats=snapshot) as bar:
        bar.start(4)
    assert "not answering for 42s" in out.getvalue()


def test_durations() -> None:
    assert [format_duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]
