"""``longreward report``: one self-contained HTML page from scored files, pair files and eval
results — score histograms, dimension correlations, chosen-vs-rejected margins, agreement with
intervals, the diagnostics of when to trust the reward (each with its reading), cost per
dimension, unscored reasons, the slowest calls, and a drill-down per prompt (each answer's
scores, its statements with evidence and verdicts, the extracted points).

The page needs no network when viewed: charts are inline SVG, and the small script (filtering,
sorting, expand/collapse) and the styles ship in this package and are inlined."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._load import Inputs, load_inputs


@dataclass
class ReportSummary:
    output: Path
    scored_files: int
    pair_files: int
    results: int
    bytes: int


def build_report(inputs: list[str | Path], output: str | Path, *, title: str = "longreward report",
                 max_prompts: int = 100) -> ReportSummary:
    """Write the report of ``inputs`` to ``output`` (HTML)."""
    from ._html import render

    loaded = load_inputs([Path(p) for p in inputs])
    page = render(loaded, title=title, max_prompts=max_prompts)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return ReportSummary(output, len(loaded.scored), len(loaded.pairs),
                         len(loaded.agreement) + len(loaded.results),
                         len(page.encode("utf-8")))


__all__ = ["Inputs", "ReportSummary", "build_report", "load_inputs"]
