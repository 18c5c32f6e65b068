"""``longreward report``: what the page holds, that it needs no network, and that a real
browser (headless Chromium) loads it with no console error — with a screenshot."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval_judge import EvalJudge
from longreward import ScoreOptions
from longreward.eval import AgreementOptions, evaluate_agreement
from longreward.preference.pairs import PairOptions
from longreward.report import build_report
from longreward.stages.pairs import build_pairs
from test_eval_agreement import write_pairwise

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def inputs(judge_double, tmp_path) -> dict[str, Path]:
    """An agreement result (its scored answers with statements, evidence and points; one
    answer unscored on completeness), a pairs file and a facts result."""
    judge_double.responder = EvalJudge()
    data = tmp_path / "pairs_data.jsonl"
    rows = write_pairwise(data)
    for k, r in enumerate(rows):
        r["response_a"] += f" C={k + 2}."
        if r["id"] != "p6":  # p6's second answer: no coverage grade, so unscored
            r["response_b"] += f" C={9 - k}."
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = ScoreOptions(judge={"model": "judge-double", "base_urls": [judge_double.base_url],
                                  "max_retries": 0, "attempts": 2})
    result = tmp_path / "agreement.json"
    asyncio.run(evaluate_agreement(data, result, options,
                                   AgreementOptions(baselines=["all"], bootstrap=200)))
    scored = tmp_path / "agreement.scored.jsonl"
    pairs = tmp_path / "dpo.jsonl"
    build_pairs(scored, pairs, PairOptions(min_candidates=2, write_parquet=False),
                run_dirs=[tmp_path / "agreement.json.run"])
    facts = tmp_path / "facts.json"
    subprocess.run([sys.executable, "-m", "longreward", "eval", "facts", str(scored), "-o",
                    str(facts)], check=True, capture_output=True, timeout=120)
    return {"agreement": result, "scored": scored, "pairs": pairs, "facts": facts}


def test_report_holds_every_section_and_loads_nothing(inputs, tmp_path):
    out = tmp_path / "report.html"
    summary = build_report([inputs["agreement"], inputs["pairs"], inputs["facts"]], out)
    assert summary.scored_files == 1 and summary.pair_files == 1 and summary.results == 2
    page = out.read_text(encoding="utf-8")
    for section in ("scores", "pairs", "agreement", "diagnostics", "facts", "cost", "unscored",
                    "slowest", "prompts"):
        assert f'<section id="{section}">' in page, section
    # no network at view time: nothing is loaded from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert page.count("<svg") >= 8  # histograms, heatmap, margins, intervals
    # agreement numbers and the tie rule
    assert "70.0" in page and "a coin flip" in page and "reward − logicality" in page
    # drill-down: statements with verdicts and their evidence text from the run store's
    # document, the extracted points, the unscored reason
    assert 'class="badge fully"' in page and 'class="badge not"' in page
    assert "Fact a0 of p1 is true: rainfall and harvests in district 3." in page
    assert "Section 0.3 of the survey reports figures on rainfall" in page  # the evidence
    assert "the key point" in page
    assert "completeness" in page and "no parsable reply" in page
    # the diagnostics, each with its reading: the pairwise baseline contradicts itself on
    # one pair of five (p2) when the answers swap places
    diag = page[page.index('<section id="diagnostics">'):page.index('<section id="facts">')]
    assert "changes its verdict in 20% of pairs" in diag
    assert "self-consistency" in diag and "--self-consistency N" in diag
    assert "no answer of 12 holds text aimed at the judge" in diag  # rows carry their flags
    # the slowest calls that the eval timed
    slow = page[page.index('<section id="slowest">'):page.index('<section id="prompts">')]
    assert "faithfulness.grade" in slow or "helpfulness" in slow


def test_cli_report_and_bad_input(inputs, tmp_path):
    out = tmp_path / "cli.html"
    r = subprocess.run([sys.executable, "-m", "longreward", "report", str(inputs["scored"]),
                        str(inputs["pairs"]), "-o", str(out), "--max-prompts", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    page = out.read_text(encoding="utf-8")
    assert "The first 2 of 6 prompts" in page
    # a scored file alone still gets the checks its rows allow
    diag = page[page.index('<section id="diagnostics">'):page.index('<section id="cost">')]
    assert "length (reward vs answer characters)" in diag and "position bias" not in diag
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "hello"}\n')
    r = subprocess.run([sys.executable, "-m", "longreward", "report", str(bad), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "neither scored answers" in r.stderr


def _chromium(page: Path, tmp_path: Path, shot: Path | None = None) -> tuple[str, str]:
    """Load ``page`` in headless Chromium: (the DOM after load, Chromium's log)."""
    profile = tmp_path / f"profile-{page.stem}"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=3000", "--window-size=1280,2000"]
    args += [f"--screenshot={shot}"] if shot else ["--dump-dom"]
    r = subprocess.run([*args, page.as_uri()], capture_output=True, text=True, timeout=120)
    return r.stdout, r.stderr


def _console_errors(log: str) -> list[str]:
    return [ln for ln in log.splitlines()
            if "CONSOLE" in ln and ("Uncaught" in ln or "Error" in ln)]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get "
                    "install chromium); the report's browser test needs it")
def test_report_in_headless_chromium_has_no_console_error(inputs, tmp_path):
    out = tmp_path / "report.html"
    build_report([inputs["agreement"], inputs["pairs"], inputs["facts"]], out)
    dom, log = _chromium(out, tmp_path)
    root = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-lr-ready="1"' in root, log[-2000:]  # the script ran to the end
    assert "data-lr-errors" not in root
    assert re.search(r'<div id="lr-errors">\s*</div>', dom)
    assert not _console_errors(log), _console_errors(log)
    shot = tmp_path / "report.png"
    _chromium(out, tmp_path, shot)
    assert shot.exists() and shot.stat().st_size > 20_000

    # the check can fail: a page whose script throws is caught by both signals
    broken = tmp_path / "broken.html"
    broken.write_text(out.read_text(encoding="utf-8").replace(
        "</main>", "<script>null.boom();</script></main>"), encoding="utf-8")
    dom, log = _chromium(broken, tmp_path)
    assert "data-lr-errors" in re.search(r"<html[^>]*>", dom).group(0)
    assert _console_errors(log)


def test_a_scored_file_finds_its_run_dir_given_by_run_dir(tmp_path):
    """Scored with ``--run-dir`` elsewhere: the report still finds the run's summary and
    documents, through the output's manifest, as the other stages do."""
    from typer.testing import CliRunner

    from longreward.cli import app
    from longreward.report._load import load_inputs

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "context": "The mill opened in 1901. " * 40,
                               "query": "When did the mill open?",
                               "response": "In 1901."}) + "\n")
    out, elsewhere = tmp_path / "out" / "scored.jsonl", tmp_path / "runs" / "first"
    r = CliRunner().invoke(app, ["score", str(src), "-o", str(out), "--dry-run",
                                 "--run-dir", str(elsewhere), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "out" / "scored.jsonl.run").exists()
    (scored,) = load_inputs([out]).scored
    assert scored.run_dir is not None and scored.run_dir.resolve() == elsewhere.resolve()
    assert scored.summary is not None and scored.summary["answers"] == 1
