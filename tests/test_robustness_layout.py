"""Layout invariance by construction (issue 21, item 6): the judge sees the canonical layout
of an answer (``longreward.text.canonical``), so a layout-only variant is the same request: the
same reward, and zero new judge calls. Tested on the rules, on the bundled answers, and through
the real scorer and HTTP path to the judge double, counting the requests it receives."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from longreward import ScoreOptions
from longreward.eval._attacks import Target, build_variants
from longreward.stages.score import score_file
from longreward.store import RunStore, StaleRunError
from longreward.text.canonical import canonical_answer
from persuadable_judges import Honest, LayoutSensitive, world_rows

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "longreward" / "examples"


@pytest.mark.parametrize(("raw", "canonical"), [
    ("a\r\nb\rc\u2028d", "a\nb\nc\nd"),  # every line break is LF
    ("a\u00a0b\u3000c\td\u2009e\u202ff", "a b c d e f"),  # every Unicode space is a space
    ("a   b \t  c", "a b c"),  # runs of spaces
    ("    indented\n\t\ttabbed\n\u3000\u3000全角缩进", "indented\ntabbed\n全角缩进"),
    ("one\n\n\n\n two\n \t \n\nthree", "one\n\ntwo\n\nthree"),  # blank-line runs: one
    ("\n\n  lead and trail  \n\n", "lead and trail"),
    ("e\u0301te\u0301", "\u00e9t\u00e9"),  # NFC
    ("zero\u200bwidth\ufeff", "zerowidth"),
    ("- a\n* b\n• c\n1. d\n2) e\n（3）f\n4、g\n五、h", "a\nb\nc\nd\ne\nf\ng\nh"),
    ("-5 degrees\n3.5 metres\n2023. A year", "-5 degrees\n3.5 metres\n2023. A year"),
])
def test_canonical_rules(raw, canonical):
    assert canonical_answer(raw) == canonical
    assert canonical_answer(canonical) == canonical  # idempotent


def test_code_blocks_are_left_as_they_are():
    code = "```python\ndef f(x):\n\n\n    return  x\t# tab\n```"
    text = f"  Here is code:\r\n\r\n\r\n{code}\n\n\n   after"
    assert canonical_answer(text) == f"Here is code:\n\n{code}\n\nafter"
    # a fence that is never closed is not a code block: it cannot exempt the answer
    assert canonical_answer("```\n   a    b\n\n\n  c") == "```\na b\n\nc"
    tilde = "~~~~\n  x  \n~~~~"
    assert canonical_answer(f"   {tilde}") == tilde
    # inline code on one line opens nothing
    assert canonical_answer("```a```   b\n\n\n  c\n```\n  d\n```") == "```a``` b\n\nc\n```\n  d\n```"


def test_a_well_formed_answer_is_its_own_canonical_form():
    """Every bundled answer (paragraphs split by one blank line, no stray spaces) is sent to
    the judge exactly as before: the canonical form changes no clean answer's reward or cache."""
    n = 0
    for line in (EXAMPLES / "candidates.jsonl").read_text(encoding="utf-8").splitlines():
        for cand in json.loads(line)["candidates"]:
            assert canonical_answer(cand["response"]) == cand["response"], cand["id"]
            n += 1
    assert n == 15


def test_layout_variants_share_the_canonical_form():
    """The suite's layout class (blank lines, indentation, tabs, NBSP, U+3000, double and
    trailing spaces, list markers, CRLF, combined at random) never changes the canonical
    form, over many seeds and both languages."""
    count = 0
    for line in (EXAMPLES / "candidates.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for cand in row["candidates"]:
            target = Target(cand["response"], row["query"], row["context"], "en")
            for seed in range(6):
                for v in build_variants(target, ["layout"], 4,
                                        lambda c, s=seed: random.Random(s)):
                    assert v.text != cand["response"]
                    assert canonical_answer(v.text) == canonical_answer(cand["response"]), (
                        cand["id"], v.attack)
                    count += 1
    assert count == 15 * 6 * 4


def _options(double, **extra) -> ScoreOptions:
    return ScoreOptions(judge={"model": "judge-double", "base_urls": [double.base_url],
                               "max_retries": 0, "attempts": 2}, **extra)


def _layouts(text: str) -> list[str]:
    return [
        "\n".join("    " + line for line in text.split("\n")),  # indentation
        text.replace("\n\n", "\n\n\n \n\t\n").replace(" ", "\u00a0", 5),  # blank lines, NBSP
        text.replace("\n", "\r\n").replace(". ", ".   "),  # CRLF, double spaces
        "\n\n".join("- " + p for p in text.split("\n\n")) + "  \n",  # list markers, trailing
        text.replace(" ", "\t", 7).replace("\n\n", "\n\n\u3000\u3000"),  # tabs, U+3000
    ]


def _write(path: Path, with_layouts: bool) -> Path:
    rows = world_rows()
    if with_layouts:
        for row in rows:
            for cand in list(row["candidates"]):
                row["candidates"] += [{"id": f"{cand['id']}-layout{k}", "response": text}
                                      for k, text in enumerate(_layouts(cand["response"]))]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("judge", [Honest, LayoutSensitive])
def test_layout_only_variants_get_the_same_reward_with_zero_new_calls(judge_double, tmp_path,
                                                                      judge):
    """Through the real scorer: score the answers, then the same answers plus five layout
    variants of each in the same run. The variants are answered from the run store: the judge
    receives no request, and each variant's reward and every dimension equal its original's,
    even for a judge whose scores move with layout."""
    judge_double.responder = judge()
    out = tmp_path / "scored.jsonl"
    asyncio.run(score_file(_write(tmp_path / "a.jsonl", False), out, _options(judge_double)))
    sent = judge_double.count()
    assert sent > 0
    summary = asyncio.run(score_file(_write(tmp_path / "b.jsonl", True), out,
                                     _options(judge_double)))
    assert judge_double.count() == sent  # zero new judge calls
    assert summary.answers_scored == 4 * 5 and summary.stats["requests"] == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    for aid, row in rows.items():
        if "-layout" in aid:
            original = rows[aid.split("-layout")[0]]
            assert row["reward"] == original["reward"] and row["scores"] == original["scores"]
            assert row["response"] != original["response"]  # the row keeps what was written


def test_raw_layout_sends_what_was_written_and_a_layout_judge_then_moves(judge_double,
                                                                        tmp_path):
    judge_double.responder = LayoutSensitive()
    out = tmp_path / "scored.jsonl"
    asyncio.run(score_file(_write(tmp_path / "b.jsonl", True), out,
                           _options(judge_double, canonical_layout=False)))
    rows = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    moved = [aid for aid, row in rows.items() if "-layout" in aid
             and row["reward"] != rows[aid.split("-layout")[0]]["reward"]]
    assert len(moved) >= 8
    # what the judge saw is what was written
    seen = {text for _, text in judge_double.responder.seen}
    assert any("\u00a0" in t or "\t" in t for t in seen)


def test_the_option_joins_the_settings_check(judge_double, tmp_path):
    """A run directory holds rows of one kind: a rerun with the other layout setting is
    refused, naming the option, rather than mixing canonical and raw rows."""
    judge_double.responder = Honest()
    answers = _write(tmp_path / "a.jsonl", False)
    out = tmp_path / "scored.jsonl"
    asyncio.run(score_file(answers, out, _options(judge_double)))
    with pytest.raises(StaleRunError, match="canonical_layout: True -> False"):
        asyncio.run(score_file(answers, out, _options(judge_double, canonical_layout=False)))
    # a run directory made before the option existed holds raw rows: refused too
    with RunStore(Path(f"{out}.run")) as store:
        old = store.get_meta("settings:score")
        del old["canonical_layout"]
        store.set_meta("settings:score", old)
    with pytest.raises(StaleRunError, match="canonical_layout: None -> True"):
        asyncio.run(score_file(answers, out, _options(judge_double)))


def test_cli_flag(tmp_path):
    from typer.testing import CliRunner

    from longreward.cli import app

    answers = tmp_path / "a.jsonl"
    answers.write_text(json.dumps(world_rows(("en",))[0]) + "\n", encoding="utf-8")
    runner = CliRunner()
    for flag, value in (("--raw-layout", False), ("--canonical-layout", True)):
        out = tmp_path / f"{flag}.jsonl"
        r = runner.invoke(app, ["score", str(answers), "-o", str(out), "--dry-run", flag,
                                "--no-progress"])
        assert r.exit_code == 0, r.output
        with RunStore(Path(f"{out}.run")) as store:
            assert store.get_meta("settings:score")["canonical_layout"] is value
