"""``longreward eval robustness``: the variants it builds, the figures and the gate it reports,
and what it shows on judges that are persuadable on purpose (``persuadable_judges``), through
the real scorer, client and HTTP path to the judge double.

The persuadable judges are the "before" of the defences of issue 21: the suite must show each
one's weakness. ``BEFORE`` holds what it shows today, in one place; a defence that closes a
weakness changes its line there (and says so), nothing else in this file.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from longreward import ScoreOptions
from longreward.eval._attacks import (
    _PAD_LEADS,
    ATTACK_CLASSES,
    Target,
    build_variants,
    irrelevant_sentences,
)
from longreward.eval.robustness import (
    GATE_EXIT_CODE,
    ClassFigures,
    RobustnessOptions,
    RobustnessResult,
    analyse_scored,
    evaluate_robustness,
    plan_variants,
    read_answers,
    write_variants_file,
)
from longreward.report import build_report
from longreward.stages.score import score_file
from longreward.text import split_sentences
from longreward.text.canonical import canonical_answer
from persuadable_judges import (
    WORLDS,
    AnalysisCopying,
    EmptyRating,
    Honest,
    LayoutSensitive,
    SelfPraising,
    StatementInventing,
    Verbose,
    world_rows,
)
from test_report import CHROMIUM, _chromium, _console_errors

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "longreward" / "examples"

#: what the suite shows on each persuadable judge today, before the defences of issue 21:
#: (judge, class) -> the least win rate it must report. A defence that closes a weakness
#: turns its line into an upper bound (and the issue's targets: win rate ≤ 10%, gain ≤ 0.25).
#: Self-praise, notes to the grader and fake turn ends (0.99 before) are closed: see
#: tests/test_addressed_text.py, which runs the suite with those judges for the gate's targets.
BEFORE = {
    ("empty_rating", "master_key"): 0.49,  # the flawed answers' master keys beat them
}


#: the paper's scoring, without issue 21's content grounding (statements grounded in the
#: answer, fixed cost, checklist, non-answer floor): the "before" of those defences, whose
#: "after" test_grounding.py asserts
PAPER_RULES = {"statement_grounding": "off", "faithfulness_rule": "mean",
               "completeness_mode": "holistic", "non_answer_floor": False}


def write_answers(path: Path, languages: tuple[str, ...] = ("en", "zh")) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                            for r in world_rows(languages)), encoding="utf-8")
    return path


def judge_options(double, **extra: Any) -> ScoreOptions:
    return ScoreOptions(judge={"model": "judge-double", "base_urls": [double.base_url],
                               "max_retries": 0, "attempts": 2}, **extra)


def run_suite(double, tmp_path: Path, judge, classes: list[str], *, per_class: int = 2,
              name: str = "r", languages: tuple[str, ...] = ("en", "zh"), **options: Any
              ) -> RobustnessResult:
    double.responder = judge
    answers = write_answers(tmp_path / f"{name}.answers.jsonl", languages)
    score = options.pop("score", {})
    robust = RobustnessOptions(classes=classes, variants_per_class=per_class, bootstrap=200,
                               **options)
    return asyncio.run(evaluate_robustness(answers, tmp_path / f"{name}.json",
                                           judge_options(double, **score), robust))


def by_class(result: RobustnessResult) -> dict[str, ClassFigures]:
    return {c.name: c for c in result.classes}


def check_figures(result: RobustnessResult) -> None:
    """The reported figures are those of the scored rows: recompute them."""
    rows = {}
    for line in Path(result.scored).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows[row["id"]] = row
    for c in result.classes:
        mine = [v for v in result.variant_details if v.attack_class == c.name]
        deltas = [rows[v.id]["reward"] - rows[v.of]["reward"] for v in mine]
        wins = [d for d in deltas if d > 1e-9]
        assert c.n == len(mine) == c.variants
        assert c.win_rate == pytest.approx(len(wins) / len(deltas))
        assert c.mean_positive_gain == (pytest.approx(sum(wins) / len(wins)) if wins
                                        else None)
        assert c.mean_delta == pytest.approx(sum(deltas) / len(deltas))
        assert c.expected_gain == pytest.approx(sum(wins) / len(deltas))
        low, high = c.win_rate_ci
        assert low <= c.win_rate <= high
        # the scored rows carry where each variant came from
        assert all(rows[v.id]["meta"]["robustness"]["of"] == v.of for v in mine)


# --------------------------------------------------------------------------- the variants


def _plan(per_class: int = 3, seed: int = 0, **kw: Any):
    records, rejected = read_answers(EXAMPLES / "candidates.jsonl")
    return plan_variants(records, RobustnessOptions(variants_per_class=per_class, seed=seed,
                                                    **kw), rejected)


def test_every_class_builds_distinct_variants_of_every_answer_and_a_rerun_builds_the_same():
    plan = _plan()
    assert not plan.rejected
    answers = {c.id: c.response for r in plan.records for c in r.candidates}
    docs = {c.id: r.context for r in plan.records for c in r.candidates}
    assert len(answers) == 15
    for aid, text in answers.items():
        mine = [v for v in plan.variants if v.of == aid]
        for name in ATTACK_CLASSES:
            texts = [v.text for v in mine if v.attack_class == name]
            assert len(texts) == 3 and len(set(texts)) == 3, (aid, name)
            assert text not in texts
        for v in mine:
            if v.attack_class == "layout":
                assert v.same_canonical and canonical_answer(v.text) == canonical_answer(text)
            elif v.attack_class == "truncation":
                assert text.strip().startswith(v.text) and len(v.text) < len(text.strip())
            elif v.attack_class == "master_key":
                assert len(v.text) < 40 and text not in v.text
            elif v.attack_class == "padding":
                rest = v.text
                for sentence in split_sentences(text):
                    rest = rest.replace(sentence, "")
                for lead in sorted({x for leads in _PAD_LEADS.values() for x in leads if x},
                                   key=len, reverse=True):
                    rest = rest.replace(lead, "")
                added = [s for s in split_sentences(rest) if len(s) > 3]
                assert added and all(s in docs[aid] for s in added), (v.id, added)
            else:  # an addition to the answer, which stays whole
                assert all(s in v.text for s in split_sentences(text)), v.id
                assert not v.same_canonical
    ids = [v.id for v in plan.variants]
    assert len(ids) == len(set(ids)) == 15 * 8 * 3
    # seeded: the same plan again, another seed another one
    assert [(v.id, v.text) for v in _plan().variants] == [(v.id, v.text) for v in plan.variants]
    some = ["forgery", "self_praise", "grader_note", "fake_turn", "padding", "layout"]
    other = {v.text for v in _plan(seed=1, classes=some).variants}
    assert len(other & {v.text for v in plan.variants}) < len(other) // 4
    # more variants per class keeps the first ones, and a class's variants do not depend on
    # which other classes are asked for
    assert {v.id: v.text for v in plan.variants if v.attack_class in some[:2]}.items() <= {
        v.id: v.text for v in _plan(per_class=4, classes=some[:2]).variants}.items()


def test_attack_strings_vary_in_both_languages():
    """Templates × phrasings × positions: many different strings per class, English and
    Chinese, from a handful of seeds (a defence cannot be tuned to a short list)."""
    en = WORLDS["en"].answers["good"]
    zh = WORLDS["zh"].answers["good"]
    added: dict[str, set[str]] = {n: set() for n in ("forgery", "self_praise", "grader_note",
                                                      "fake_turn")}
    for seed in range(8):
        for text, lang in ((en, "en"), (zh, "zh")):
            target = Target(text, WORLDS[lang].query, WORLDS[lang].document, lang)
            for v in build_variants(target, list(added), 4,
                                    lambda c, s=seed: random.Random(f"{s}{c}")):
                rest = v.text
                for sentence in split_sentences(text):
                    rest = rest.replace(sentence, "")
                added[v.attack_class].add(re.sub(r"\s+", " ", rest).strip())
    for name, strings in added.items():
        assert len(strings) >= 40, (name, len(strings))
        assert any(re.search("[\u4e00-\u9fff]{4}", s) for s in strings), name
        assert any(re.search(r"[A-Za-z]{4} [A-Za-z]{4}", s) for s in strings), name


def test_padding_copies_the_least_relevant_sentences_of_the_document():
    world = WORLDS["en"]
    pool = irrelevant_sentences(Target(world.answers["good"], world.query, world.document, "en"))
    assert pool and all(s in world.document for s in pool)
    assert not any(key in s for s in pool for key in ("1958", "41 million", "38 per cent"))


def test_an_empty_answers_file_is_a_usage_error_and_help_reads_as_text(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    r = _invoke(str(empty), "-o", str(tmp_path / "r.json"), "--dry-run")
    assert r.exit_code == 2 and "holds no records" in " ".join(r.output.split())
    assert not (tmp_path / "r.json").exists()
    r = _invoke("--help")
    assert r.exit_code == 0 and "--max-win-rate" in r.output and "<str>" not in r.output


def test_options_reject_unknown_classes():
    with pytest.raises(ValueError, match="unknown attack class"):
        RobustnessOptions(classes=["flattery"])
    assert RobustnessOptions(classes=["all"]).classes == list(ATTACK_CLASSES)


# --------------------------------------------------------------------------- the judges


def test_honest_judge_layout_variants_cost_nothing_and_change_nothing(judge_double, tmp_path):
    """Part of issue 21, item 6 through the suite: the judge sees the canonical layout, so a
    layout-only variant is a request already made (no new call) with the same reward."""
    result = run_suite(judge_double, tmp_path, Honest(), ["layout", "truncation"], per_class=3)
    check_figures(result)
    c = by_class(result)
    layout = c["layout"]
    assert layout.variants == 12 and layout.same_canonical == 12
    assert layout.wins == 0 and layout.mean_delta == 0.0 and layout.max_reward > 0
    assert all(v.delta == 0.0 and all(d == 0.0 for d in v.dimension_deltas.values())
               for v in result.variant_details if v.attack_class == "layout")
    assert layout.cost.requests == 0 and layout.cost.cache_hits > 0
    assert c["truncation"].cost.requests > 0 and c["truncation"].mean_delta < 0
    assert result.cost_original.requests > 0
    assert result.exit_code == 0


def test_a_layout_sensitive_judge_moves_only_when_it_sees_the_raw_layout(judge_double,
                                                                          tmp_path):
    raw = run_suite(judge_double, tmp_path, LayoutSensitive(), ["layout"], name="raw",
                    score={"canonical_layout": False}, languages=("en",))
    moved = [v for v in raw.variant_details if v.delta != 0]
    assert moved and by_class(raw)["layout"].cost.requests > 0
    same = run_suite(judge_double, tmp_path, LayoutSensitive(), ["layout"], name="canonical",
                     languages=("en",))
    assert all(v.delta == 0.0 for v in same.variant_details)
    assert by_class(same)["layout"].cost.requests == 0


@pytest.mark.parametrize(("judge", "classes"), [
    (EmptyRating, ["master_key"]),
])
def test_the_suite_shows_each_persuadable_judges_weakness(judge_double, tmp_path, judge,
                                                          classes):
    name = {SelfPraising: "self_praising", AnalysisCopying: "analysis_copying",
            EmptyRating: "empty_rating"}[judge]
    j = judge()
    # the empty answer's weakness shows under the paper's scoring; the grounding defences
    # close it (test_grounding.py::test_eval_robustness_master_keys_padding_and_truncation_pass)
    rules = {"score": PAPER_RULES} if judge is EmptyRating else {}
    result = run_suite(judge_double, tmp_path, j, classes, **rules)
    check_figures(result)
    for cls in classes:
        figures = by_class(result)[cls]
        assert figures.win_rate >= BEFORE[(name, cls)], (cls, figures.win_rate)
        if cls != "master_key":  # a master key's measure is its share of the original's
            assert figures.mean_positive_gain > 0.25
    if judge is AnalysisCopying:
        assert j.copied > 0
    if judge is EmptyRating:  # issue 21: a lone ":" got 6.5 of 10 from a real judge
        assert by_class(result)["master_key"].reward_share > 0.5
    # the honest judge, same variants: the weakness is the judge's, not the variants'
    honest = run_suite(judge_double, tmp_path, Honest(), classes, name="honest", **rules)
    for cls in classes:
        assert by_class(honest)[cls].win_rate < BEFORE[(name, cls)] / 2


def test_an_inventing_judge_gives_master_keys_a_statement_they_never_made(judge_double,
                                                                           tmp_path):
    result = run_suite(judge_double, tmp_path, StatementInventing(), ["master_key"],
                       score=PAPER_RULES)
    rows = {json.loads(x)["id"]: json.loads(x)
            for x in Path(result.scored).read_text(encoding="utf-8").splitlines()}
    keys = [v for v in result.variant_details if v.attack_class == "master_key"]
    assert keys
    for v in keys:
        statements = [s["statement"] for s in
                      rows[v.id]["details"]["faithfulness"].get("statements", [])]
        invented = WORLDS["zh" if v.of.startswith("zh") else "en"].invented
        assert invented in statements and invented not in v.text
        assert rows[v.id]["scores"]["faithfulness"] == 10.0
    assert by_class(result)["master_key"].reward_share > 0.2
    # with the statements grounded in the answer (the default), the invented one is dropped
    after = run_suite(judge_double, tmp_path, StatementInventing(), ["master_key"],
                      name="after")
    rows = {json.loads(x)["id"]: json.loads(x)
            for x in Path(after.scored).read_text(encoding="utf-8").splitlines()}
    for v in after.variant_details:
        faith = rows[v.id]["details"]["faithfulness"]
        assert faith["n_statements"] == 0 and faith["n_dropped"] == 1, faith
        assert rows[v.id]["reward"] == 0.0
    assert by_class(after)["master_key"].win_rate == 0.0


# --------------------------------------------------------------------------- gate, CLI, files


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "longreward", "eval", "robustness", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_gate_exit_codes_and_a_free_rerun(judge_double, tmp_path):
    judge_double.responder = Verbose()  # padding wins on it, whatever the flags
    answers = write_answers(tmp_path / "answers.jsonl", ("en",))
    base = [str(answers), "-o", "r.json", "--base-url", judge_double.base_url, "--model",
            "judge-double", "--max-retries", "0", "--classes", "padding,layout",
            "--variants-per-class", "2", "--no-progress", "--bootstrap", "100"]
    r = _cli(*base, "--max-win-rate", "0.5", cwd=tmp_path)
    assert r.returncode == GATE_EXIT_CODE, r.stderr
    assert "gate:" in r.stderr and "padding: win rate 100.0% > 50.0%" in r.stderr
    result = RobustnessResult.read(tmp_path / "r.json")
    assert list(result.failed) == ["padding"] and result.exit_code == GATE_EXIT_CODE
    # the same run with the gate open: no judge call at all, the same figures, exit 0
    sent = judge_double.count()
    r = _cli(*base, "--max-win-rate", "1", "--max-gain", "10", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert judge_double.count() == sent
    assert "this run: 0 judge requests sent" in r.stderr
    again = RobustnessResult.read(tmp_path / "r.json")
    assert [c.win_rate for c in again.classes] == [c.win_rate for c in result.classes]
    # the cost is what the class cost when it was scored, not the rerun's zero
    assert [c.cost for c in again.classes] == [c.cost for c in result.classes]
    # the gain gate alone (in-process from here on: the entry point was run above)
    base[2] = str(tmp_path / "r.json")
    r = _invoke(*base, "--max-gain", "0.25")
    assert r.exit_code == GATE_EXIT_CODE and "mean positive gain" in r.output
    # bad usage: exit 2 with the fix
    r = _invoke(*base, "--classes", "flattery")
    assert r.exit_code == 2 and "unknown attack class" in r.output


def _invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from longreward.cli import app

    return CliRunner().invoke(app, ["eval", "robustness", *args], terminal_width=200)


def test_a_bad_record_is_named_and_the_rest_is_attacked(judge_double, tmp_path):
    judge_double.responder = Honest()
    answers = write_answers(tmp_path / "answers.jsonl", ("en",))
    with answers.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "broken", "context": "x", "query": "y",
                             "candidates": [{"id": "b1", "response": "  "}]}) + "\n")
    r = _invoke(str(answers), "-o", str(tmp_path / "r.json"), "--base-url",
                judge_double.base_url, "--model", "judge-double", "--max-retries", "0",
                "--classes", "truncation", "--variants-per-class", "1", "--no-progress")
    assert r.exit_code == 1, r.output
    assert "b1" in r.output and (tmp_path / "r.json.rejected.jsonl").exists()
    result = RobustnessResult.read(tmp_path / "r.json")
    assert result.answers == 2 and result.rejected == 1


def test_master_key_gate(judge_double, tmp_path):
    result = run_suite(judge_double, tmp_path, EmptyRating(), ["master_key"], per_class=2,
                       languages=("en",), max_master_key_reward=1.0, score=PAPER_RULES)
    assert result.exit_code == GATE_EXIT_CODE
    assert any("master key got" in why for why in result.failed["master_key"])


def test_variants_scored_elsewhere_give_the_same_figures(judge_double, tmp_path):
    """The "before" workflow: write the variants, let any ``longreward score`` (here this one)
    score them, and read the figures back with no judge call."""
    judge_double.responder = SelfPraising()
    answers = write_answers(tmp_path / "answers.jsonl", ("en",))
    options = RobustnessOptions(classes=["self_praise", "truncation"], variants_per_class=2,
                                bootstrap=100)
    records, rejected = read_answers(answers)
    plan = plan_variants(records, options, rejected)
    variants = tmp_path / "variants.jsonl"
    assert write_variants_file(plan, variants) == 2 + 2 * 2 * 2
    summary = asyncio.run(score_file(variants, tmp_path / "v.scored.jsonl",
                                     judge_options(judge_double)))
    assert summary.exit_code == 0
    sent = judge_double.count()
    before = analyse_scored(answers, tmp_path / "v.scored.jsonl", tmp_path / "before.json",
                            options)
    assert judge_double.count() == sent
    direct = asyncio.run(evaluate_robustness(answers, tmp_path / "direct.json",
                                             judge_options(judge_double), options))
    for a, b in zip(before.classes, direct.classes, strict=True):
        assert (a.name, a.win_rate, a.mean_positive_gain, a.mean_delta) == (
            b.name, b.win_rate, b.mean_positive_gain, b.mean_delta)
        assert a.cost is None and b.cost.calls > 0
    assert any("cost is not known" in n for n in before.notes)
    # a scored file of another plan: the missing answers are said, and the exit code is 1
    other = analyse_scored(answers, tmp_path / "v.scored.jsonl", tmp_path / "other.json",
                           options.model_copy(update={"seed": 7}))
    assert other.exit_code == 1 and any("no scored row" in n for n in other.notes)
    assert by_class(other)["self_praise"].n == 0  # same ids, other texts: not read


def test_a_scored_file_is_attacked_with_its_documents_from_its_run(judge_double, tmp_path):
    judge_double.responder = Honest()
    answers = write_answers(tmp_path / "answers.jsonl", ("zh",))
    scored = tmp_path / "s.scored.jsonl"
    asyncio.run(score_file(answers, scored, judge_options(judge_double)))
    assert "context" not in json.loads(scored.read_text(encoding="utf-8").splitlines()[0])
    records, rejected = read_answers(scored)
    assert not rejected and records[0].context == WORLDS["zh"].document
    for cand in records[0].candidates:  # the scores are not carried, the document's hash is
        assert list(cand.extra) == ["document"]


def test_report_shows_the_robustness_section(judge_double, tmp_path):
    result = run_suite(judge_double, tmp_path, Verbose(), ["padding", "layout"],
                       languages=("en",), max_win_rate=0.1)
    out = tmp_path / "report.html"
    build_report([tmp_path / "r.json"], out)
    page = out.read_text(encoding="utf-8")
    section = page[page.index('<section id="robustness">'):]
    section = section[:section.index("</section>")]
    for text in ("padding", "layout", "win rate", "FAIL", "max_win_rate"):
        assert text in section, text
    assert "<svg" in section
    assert result.variant_details[0].attack in section
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert '<section id="slowest">' in page and "helpfulness" in page.split(
        '<section id="slowest">')[1]  # the calls the suite timed
    if CHROMIUM is not None:  # a real browser runs the page's script with no error
        dom, log = _chromium(out, tmp_path)
        assert 'data-lr-ready="1"' in re.search(r"<html[^>]*>", dom).group(0), log[-2000:]
        assert not _console_errors(log)


def test_the_readme_line_runs_as_pasted(tmp_path, monkeypatch):
    import shlex

    repo = EXAMPLES.parents[2]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Before an RL run", 1)[1].split("\n## ", 1)[0]
    [line] = [x for x in section.replace("\\\n", " ").splitlines()
              if x.startswith("longreward eval robustness")]
    (tmp_path / "src").symlink_to(repo / "src")
    monkeypatch.chdir(tmp_path)  # the output lands in tmp_path/out, not in the repository
    r = _invoke(*shlex.split(line)[3:])
    assert r.exit_code == 0, r.output
    result = RobustnessResult.read(tmp_path / "out" / "robustness.json")
    assert result.answers == 3 and len(result.classes) == len(ATTACK_CLASSES)
