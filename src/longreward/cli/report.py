"""``longreward report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._progress import summary_table
from ._app import app
from ._common import err


@app.command("report")
def report_command(
    inputs: Annotated[list[Path], typer.Argument(help="Scored files, pair files and eval results (JSON from `longreward eval`); an agreement result brings its scored answers.", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.")],
    title: Annotated[str, typer.Option(help="Page title.")] = "longreward report",
    max_prompts: Annotated[int, typer.Option(help="Prompts in the drill-down (the page grows with each).", min=0)] = 100,
) -> None:
    """One self-contained HTML report (no network needed to view it): score histograms, dimension correlations, chosen-vs-rejected margins, agreement with intervals, when to trust the reward (position bias, length, ties, self-consistency, dimension correlations, injection flags), cost per dimension, unscored reasons, the slowest calls and a drill-down per prompt."""
    from ..report import build_report

    s = build_report(inputs, output, title=title, max_prompts=max_prompts)
    err.print(summary_table("longreward report", [
        ("scored files", s.scored_files), ("pair files", s.pair_files),
        ("eval results", s.results), ("size", f"{s.bytes / 1024:.0f} KiB"),
        ("output", str(s.output))]))
