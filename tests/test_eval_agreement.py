"""``eval agreement``: the accuracy arithmetic against a judge whose verdicts we set, the tie
rule, the interval, the no-call ablation, the baselines, resuming, bad rows, and the CLI on
the shipped LongEval example."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval_judge import EvalJudge
from longreward import ScoreOptions
from longreward.errors import UsageError
from longreward.eval import (
    AgreementOptions,
    AgreementResult,
    evaluate_agreement,
    read_agreement_data,
)
from longreward.eval._stats import Bootstrap, accuracy, credit, verdict_from_scores

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "longeval_pubmed" / \
    "faithfulness_human.jsonl"


def _doc(k: int) -> str:
    return " ".join(f"Section {k}.{i} of the survey reports figures on rainfall, harvests "
                    f"and prices in district {i}." for i in range(12))


# (H, L, facts, P, O) of answer a and answer b, and the human label. Reward = mean(H, L, F),
# F = 10 * mean(support) with true=1, half=0.5, other=0.
PAIRS = [
    ("p1", (8, 8, ["true", "true"], 9, 9), (4, 4, ["wrong"], 1, 2), "a"),
    ("p2", (6, 6, ["true"], None, 3), (7, 7, ["wrong"], None, None), "a"),
    ("p3", (5, 5, ["true"], 3, 1), (5, 5, ["true"], 7, 8), "b"),
    ("p4", (9, 3, ["half"], 1, 8), (3, 9, ["true"], 5, 2), "a"),
    ("p5", (2, 2, ["wrong"], 5, 9), (6, 6, ["true", "half"], 5, 1), "b"),
    ("p6", (5, 5, ["true"], 5, 5), (5, 5, ["true"], 5, 5), "tie"),
]


def _answer(side: str, pid: str, spec: tuple) -> str:
    h, lo, facts, p, o = spec
    marks = f"H={h} L={lo}" + (f" P={p}" if p is not None else "") + \
        (f" O={o}" if o is not None else "")
    sentences = " ".join(f"Fact {side}{i} of {pid} is {f}: rainfall and harvests in "
                         f"district {i + 3}." for i, f in enumerate(facts))
    return f"Answer {side} to {pid}: {marks}. {sentences}"


def write_pairwise(path: Path, extra_rows: list[dict] | None = None) -> list[dict]:
    rows = [{"id": pid, "context": _doc(k), "query": f"What does part {k} report?",
             "response_a": _answer("a", pid, a), "response_b": _answer("b", pid, b),
             "label": label} for k, (pid, a, b, label) in enumerate(PAIRS)]
    rows += extra_rows or []
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def options(double, dims=("helpfulness", "logicality", "faithfulness")) -> ScoreOptions:
    return ScoreOptions(judge={"model": "judge-double", "base_urls": [double.base_url],
                               "max_retries": 0},
                        dimensions=list(dims))


def without_cost(methods: list) -> list[dict]:
    return [m.model_dump(exclude={"cost"}) for m in methods]


def by_name(result) -> dict[str, dict]:
    """Every method and leave-one-out row of a result, as dicts, by name."""
    return {m.name: m.model_dump() for m in [*result.methods, *result.ablation]}


# --------------------------------------------------------------------------- arithmetic


def test_verdicts_and_the_tie_rule_by_hand():
    assert verdict_from_scores(7, 5) == "a" and verdict_from_scores(5, 7) == "b"
    assert verdict_from_scores(7.0, 7.0000000001) == "tie"
    assert verdict_from_scores(None, 3) is None
    assert credit("a", "a", "half") == 1 and credit("b", "a", "half") == 0
    assert credit("tie", "a", "half") == 0.5 and credit(None, "b", "half") == 0.5
    assert credit("tie", "a", "wrong") == 0 and credit("tie", "a", "skip") is None
    boot = Bootstrap(["x", "y", "z", "w"], resamples=200, seed=3)
    acc = accuracy("m", ["a", "b", "tie", None], ["a", "a", "b", "b"], "half", boot)
    assert acc.accuracy == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert (acc.agree, acc.disagree, acc.ties, acc.abstained, acc.n) == (1, 1, 1, 1, 4)
    assert accuracy("m", ["a", "b", "tie", None], ["a", "a", "b", "b"], "skip",
                    boot).accuracy == 0.5


def test_bootstrap_interval_is_seeded_and_resamples_prompts():
    clusters = ["p1", "p1", "p2", "p3", "p3", "p4"]
    credits = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    one = Bootstrap(clusters, resamples=500, seed=7).interval(credits)
    assert one == Bootstrap(clusters, resamples=500, seed=7).interval(credits)
    assert one != Bootstrap(clusters, resamples=500, seed=8).interval(credits)
    assert one[0] <= 4 / 6 <= one[1]
    # every prompt the same: no spread at all
    assert Bootstrap(clusters, resamples=100, seed=0).interval([1.0] * 6) == (1.0, 1.0)
    assert Bootstrap(clusters, resamples=0).interval(credits) == (None, None)


# --------------------------------------------------------------------------- end to end


def test_agreement_accuracy_is_exact_with_a_controlled_judge(judge_double, tmp_path):
    judge = EvalJudge()
    judge_double.responder = judge
    data = tmp_path / "pairs.jsonl"
    rows = write_pairwise(data)
    out = tmp_path / "agreement.json"
    agreement = AgreementOptions(baselines=["all"], bootstrap=300, seed=1)
    result = asyncio.run(evaluate_agreement(data, out, options(judge_double), agreement))

    assert result.pairs == 5 and result.human_ties_left_out == 1
    assert result.format == "pairwise" and result.tie_rule == "half"
    m = by_name(result)
    # worked out by hand in PAIRS' comment: reward ✓ ✓ = ✗ ✓
    assert m["reward"]["accuracy"] == pytest.approx(3.5 / 5)
    assert (m["reward"]["agree"], m["reward"]["disagree"], m["reward"]["ties"]) == (3, 1, 1)
    assert m["helpfulness"]["accuracy"] == pytest.approx(3.5 / 5)
    assert m["logicality"]["accuracy"] == pytest.approx(2.5 / 5)
    assert m["faithfulness"]["accuracy"] == pytest.approx(3.5 / 5)
    # leave-one-out, recombined from stored scores
    assert m["without helpfulness"]["accuracy"] == pytest.approx(3.5 / 5)
    assert m["without logicality"]["accuracy"] == pytest.approx(4.5 / 5)
    assert m["without faithfulness"]["accuracy"] == pytest.approx(3 / 5)
    assert m["without logicality"]["delta"] == pytest.approx(0.2)
    assert result.ablation_requests == 0
    # baselines: pairwise ✓, self-contradiction (tie), ✓, ✗, tie
    pw = m["pairwise"]
    assert pw["accuracy"] == pytest.approx(3 / 5) and (pw["agree"], pw["ties"]) == (2, 2)
    assert result.baseline_details["pairwise"]["p2"]["orders"] == ["a", "b"]
    # holistic ✓, no verdict (b unparsable), ✓, ✓, ✗
    ho = m["holistic"]
    assert ho["accuracy"] == pytest.approx(3.5 / 5) and ho["abstained"] == 1
    text = {r["id"]: (r["response_a"], r["response_b"]) for r in rows}
    longer = sum(1 for pid, _, _, label in PAIRS if label != "tie" and
                 len(text[pid][0 if label == "a" else 1]) > len(text[pid][1 if label == "a" else 0]))
    assert m["length"]["agree"] == longer
    # two answers per prompt: consensus cannot choose, so it is left out with a note
    assert "consensus" not in m and "consensus left out" in result.notes[0]
    for name in ("reward", "pairwise"):
        lo, hi = m[name]["ci"]
        assert lo <= m[name]["accuracy"] <= hi
    # the judged baselines' calls: 2 per pair (5 pairs, both orders); holistic once per
    # answer, the unparsable one asked 5 times in all
    assert judge.asked["PairwiseReply"] == 10
    assert judge.asked["HolisticReply"] == 9 + 5
    assert m["pairwise"]["cost"]["calls"] == 10
    assert json.loads(out.read_text())["methods"] == result.to_json()["methods"]
    assert AgreementResult.read(out) == result
    assert Path(result.scored).exists()

    # rerun: every answer resumed, every baseline call from the store: no request at all
    before = judge_double.count()
    again = asyncio.run(evaluate_agreement(data, out, options(judge_double), agreement))
    assert judge_double.count() == before
    assert again.stats["requests"] == 0
    assert without_cost(again.methods) == without_cost(result.methods)
    assert again.ablation == result.ablation
    # each method's cost is what it cost, though this run sent nothing
    for name in ("reward", "faithfulness", "pairwise", "holistic"):
        assert by_name(again)[name]["cost"]["calls"] == m[name]["cost"]["calls"] > 0
        assert by_name(again)[name]["cost"]["prompt_tokens"] == m[name]["cost"]["prompt_tokens"]
    assert by_name(again)["pairwise"]["cost"]["cache_hits"] == 10


def test_tie_rules_change_only_the_credit_of_ties(judge_double, tmp_path):
    judge_double.responder = EvalJudge()
    data = tmp_path / "pairs.jsonl"
    write_pairwise(data)
    opts = options(judge_double, dims=("helpfulness", "logicality", "faithfulness"))
    got = {}
    for rule in ("wrong", "skip"):
        r = asyncio.run(evaluate_agreement(data, tmp_path / f"{rule}.json", opts,
                                           AgreementOptions(ties=rule, baselines=[]),
                                           run_dir=tmp_path / "run"))
        got[rule] = by_name(r)["reward"]
        assert rule in r.tie_rule_text or r.tie_rule == rule
    assert got["wrong"]["accuracy"] == pytest.approx(3 / 5) and got["wrong"]["n"] == 5
    assert got["skip"]["accuracy"] == pytest.approx(3 / 4) and got["skip"]["n"] == 4


def test_pointwise_rows_form_within_prompt_pairs(judge_double, tmp_path):
    judge_double.responder = EvalJudge()
    doc = _doc(1)
    rows = [  # human scores 9, 5, 5 and 2, 8 (higher is better)
        {"id": "x1", "prompt_id": "X", "human": 9, "response": "Shared words alpha beta gamma delta H=8 L=8."},
        {"id": "x2", "prompt_id": "X", "human": 5, "response": "Shared words alpha beta gamma H=3 L=3."},
        {"id": "x3", "prompt_id": "X", "human": 5, "response": "Shared words alpha delta H=2 L=9."},
        {"id": "y1", "prompt_id": "Y", "human": 2, "response": "Y one H=9 L=9."},
        {"id": "y2", "prompt_id": "Y", "human": 8, "response": "Y two H=1 L=1."},
        {"id": "y3", "prompt_id": "Y", "human": "n/a", "response": "Y three H=5 L=5."},
    ]
    for r in rows:
        r.update(context=doc, query="What is reported?")
    data = tmp_path / "points.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parsed = read_agreement_data(data, AgreementOptions(label_field="human"))
    assert parsed.kind == "pointwise" and parsed.below_gap == 1
    assert {(p.a, p.b, p.label) for p in parsed.pairs} == {
        ("x1", "x2", "a"), ("x1", "x3", "a"), ("y1", "y2", "b")}
    assert [e.record for e in parsed.rejected] == ["y3"] and parsed.rejected[0].field == "human"
    gap = read_agreement_data(data, AgreementOptions(label_field="human", min_gap=4.5))
    assert {(p.a, p.b) for p in gap.pairs} == {("y1", "y2")} and gap.below_gap == 3

    out = tmp_path / "points.json"
    result = asyncio.run(evaluate_agreement(
        data, out, options(judge_double, dims=("helpfulness", "logicality")),
        AgreementOptions(label_field="human", baselines=["consensus", "length"])))
    m = by_name(result)
    # reward = mean(H, L): x1 8 > x2 3 ✓, x1 8 > x3 5.5 ✓, y1 9 > y2 1 but humans chose y2 ✗
    assert m["reward"]["accuracy"] == pytest.approx(2 / 3)
    # x1 shares the most words with the others, so consensus picks it; Y has two answers
    assert (m["consensus"]["agree"], m["consensus"]["ties"]) == (2, 1)
    assert result.rejected == 1 and result.exit_code == 1
    assert (tmp_path / "points.json.rejected.jsonl").exists()


def test_bad_pairwise_rows_are_rejected_by_name_and_the_rest_is_evaluated(judge_double,
                                                                           tmp_path):
    judge_double.responder = EvalJudge()
    data = tmp_path / "pairs.jsonl"
    write_pairwise(data, extra_rows=[
        {"id": "bad-label", "context": "c", "query": "q", "response_a": "x", "response_b": "y",
         "label": "maybe"},
        {"id": "no-b", "context": "c", "query": "q", "response_a": "x", "label": "a"},
        {"id": "empty-doc", "context": "", "query": "q", "response_a": "x", "response_b": "y",
         "label": "b"}])
    result = asyncio.run(evaluate_agreement(
        data, tmp_path / "r.json", options(judge_double, dims=("helpfulness",)),
        AgreementOptions(baselines=[])))
    assert result.pairs == 5 and result.rejected == 3 and result.exit_code == 1
    listed = [json.loads(x) for x in (tmp_path / "r.json.rejected.jsonl").read_text().splitlines()]
    assert {(x["record"].split(" ")[0], x["field"]) for x in listed} >= {
        ("pairs.jsonl:7", "label"), ("pairs.jsonl:8", "response_b")}
    assert any(x["field"] == "context" for x in listed)


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="unknown baseline"):
        AgreementOptions(baselines=["oracle"])


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "longreward", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_on_the_shipped_longeval_example_with_the_dry_run_judge(tmp_path):
    out = tmp_path / "agreement.json"
    args = ["eval", "agreement", str(EXAMPLE), "--label-field", "human_faithfulness",
            "-o", str(out), "--dry-run", "--dimensions", "faithfulness,completeness",
            "--no-progress", "--baselines", "length,consensus,holistic"]
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "DRY RUN" in r.stderr and "agreement with human labels: 19 pairs" in r.stderr
    assert "ties: half" in r.stderr.lower().replace("\n", " ") or "Ties: half" in r.stderr
    result = AgreementResult.read(out)
    assert result.pairs == 19 and result.below_min_gap == 1  # article_1: 100 vs 100
    names = [m.name for m in result.methods]
    assert names == ["reward", "faithfulness", "completeness", "length", "holistic"]
    assert "note: consensus left out" in " ".join(r.stderr.split())
    assert [a.removed for a in result.ablation] == ["faithfulness", "completeness"]
    scored = [json.loads(x) for x in Path(result.scored).read_text().splitlines()]
    assert len(scored) == 40 and scored[0]["meta"]["model"] in ("bigbird_pegasus", "longt5")
    r2 = _cli(*args, cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    again = AgreementResult.read(out)
    assert again.stats["requests"] == 0
    assert without_cost(again.methods) == without_cost(result.methods)


# --------------------------------------------------------------------------- subsets


def test_a_subset_of_prompts_then_the_rest_resumes(judge_double, tmp_path):
    judge_double.responder = EvalJudge()
    data = tmp_path / "pairs.jsonl"
    write_pairwise(data)
    out = tmp_path / "agreement.json"
    opts = options(judge_double, dims=("helpfulness", "logicality"))
    first = asyncio.run(evaluate_agreement(data, out, opts,
                                           AgreementOptions(limit=2, baselines=[])))
    assert (first.prompts, first.pairs, first.answers) == (2, 2, 4)
    assert first.subset is not None and first.subset.prompts_in_data == 6
    assert [p.id for p in first.pair_details] == ["p1", "p2"]
    sent = judge_double.count()
    # a pairwise row's own id names its prompt
    one = asyncio.run(evaluate_agreement(data, tmp_path / "one.json", opts,
                                         AgreementOptions(prompts=["p2"], baselines=[]),
                                         run_dir=tmp_path / "agreement.json.run"))
    assert [p.id for p in one.pair_details] == ["p2"] and judge_double.count() == sent
    # the whole data: the first two prompts' answers are resumed, only the others are scored
    whole = asyncio.run(evaluate_agreement(data, out, opts, AgreementOptions(baselines=[])))
    assert whole.subset is None and whole.pairs == 5
    assert (whole.scoring.resumed, whole.scoring.scored_now) == (4, 8)
    # mean(H, L): p1 ✓, p2 ✗, p3 and p4 tie, p5 ✓
    assert by_name(whole)["reward"]["accuracy"] == pytest.approx(3 / 5)
    with pytest.raises(UsageError, match="does not hold.*nope"):
        asyncio.run(evaluate_agreement(data, out, opts,
                                       AgreementOptions(prompts=["nope"], baselines=[])))


# --------------------------------------------------------------------------- diagnostics


def test_diagnostics_by_hand():
    from longreward.eval import diagnostics as dg

    # position bias: 4 pairs asked both ways; two flips, both times the first place won
    pb = dg.position_bias({"pairwise": [("a", "a"), ("a", "b"), ("b", "b"), ("a", "b")],
                           "other": [(None, "a")]})
    assert pb.value == pytest.approx(0.5) and pb.n == 4 and pb.status == "warn"
    assert "favours the first place" in pb.reading and "pairwise" in pb.reading
    assert dg.position_bias({}).status == "not_measured"

    def row(pid, text, reward, **scores):
        return {"prompt_id": pid, "response": text, "reward": reward, "scores": scores}

    # reward rises with length exactly: rho 1, "mostly measures length"
    rows = [row("p", "x" * n, r, helpfulness=h, logicality=h, faithfulness=f)
            for n, r, h, f in [(10, 2.0, 1, 10), (20, 4.0, 3, 10), (30, 6.0, 5, 10),
                               (40, 8.0, 7, 10)]]
    ln = dg.length_bias(rows)
    assert ln.value == pytest.approx(1.0) and "mostly measures length" in ln.reading
    assert ln.details["longer_wins"] == 1.0 and ln.details["within_prompt_pairs"] == 6
    flat = dg.length_bias([row("p", "x" * n, r) for n, r in [(10, 5), (20, 9), (30, 1),
                                                             (40, 2), (50, 7)]])
    assert abs(flat.value) < 0.3 and "explains little" in flat.reading

    # ties: prompt A's best and worst tie, B's do not, C has one answer (not counted)
    tie = dg.tie_rate([row("A", "a", 5.0), row("A", "b", 5.0), row("B", "c", 5.0),
                       row("B", "d", 6.0), row("B", "e", 6.0), row("C", "f", 1.0)])
    assert tie.value == pytest.approx(0.5) and tie.n == 2 and tie.status == "warn"
    assert tie.details["tied_pairs"] == 2 and tie.details["pairs"] == 4

    # dimension correlations: helpfulness and logicality equal (r = 1); faithfulness constant
    dc = dg.dimension_correlations(rows, ["helpfulness", "logicality", "faithfulness"])
    assert dc.value == pytest.approx(1.0)
    assert "helpfulness and logicality move together" in dc.reading
    assert "faithfulness (always 10)" in dc.reading

    # injection: not recorded, then 1 of 3 flagged
    assert dg.injection_rate(rows).status == "not_recorded"
    marks = [[], [{"kind": "verdict", "start": 0, "end": 6, "text": "[[10]]"},
                  {"kind": "verdict", "start": 9, "end": 15, "text": "[[10]]"}], []]
    flagged = [{**r, "flags": f} for r, f in zip(rows, marks, strict=False)]
    inj = dg.injection_rate(flagged)
    assert inj.value == pytest.approx(1 / 3) and inj.n == 3 and "1 of 3" in inj.reading
    assert "(verdict 2)" in inj.reading and inj.details["by_kind"] == {"verdict": 2}

    # self-consistency: a's reward moves 6 → 7 → 8 (sd 1), b's stays 7: the pair flips
    sc = dg.self_consistency({"a": [6.0, 7.0, 8.0], "b": [7.0, 7.0, 7.0]}, [("a", "b")],
                             temperature=0.7, reference_gap=1.0)
    assert sc.value == pytest.approx(0.5) and sc.details["pairs_flipped"] == 1
    assert sc.status == "warn" and "partly noise" in sc.reading


def test_self_consistency_and_diagnostics_in_the_result(judge_double, tmp_path):
    judge_double.responder = EvalJudge()
    data = tmp_path / "pairs.jsonl"
    rows = write_pairwise(data)
    rows[2]["response_b"] += " J=2."  # p3's second answer: helpfulness 3, 5, 7 by seed
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "agreement.json"
    agreement = AgreementOptions(baselines=["pairwise"], self_consistency=6, bootstrap=0)
    result = asyncio.run(evaluate_agreement(data, out, options(judge_double), agreement))
    names = [d.name for d in result.diagnostics]
    assert names == ["position_bias", "length", "ties", "self_consistency",
                     "dimension_correlations", "injection"]
    sc = result.diagnostic("self_consistency")
    # six answers rescored 3 times; only p3/b moves: rewards 6, 6.67, 7.33 (sd 2/3)
    assert sc.n == 6 and sc.details["repeats"] == 3
    assert sc.details["per_answer_sd"]["p3/b"] == pytest.approx(2 / 3)
    assert sc.value == pytest.approx((2 / 3) / 6)
    assert (sc.details["pairs"], sc.details["pairs_flipped"]) == (3, 1)
    assert sc.details["calls"] > 0
    # the T=0 scores are untouched by the rescorings
    assert by_name(result)["reward"]["accuracy"] == pytest.approx(3.5 / 5)
    # position bias from the pairwise baseline's two orders: p2 and p5 contradict themselves
    pb = result.diagnostic("position_bias")
    assert pb.details["methods"]["pairwise"]["flips"] == 1 and pb.n == 5
    # every scored row records its flags (issue 14); none of these answers has any
    inj = result.diagnostic("injection")
    assert inj.status == "ok" and inj.value == 0.0
    # a rerun makes no call: the rescorings are cached under their seeds
    before = judge_double.count()
    again = asyncio.run(evaluate_agreement(data, out, options(judge_double), agreement))
    assert judge_double.count() == before
    assert again.diagnostic("self_consistency").value == pytest.approx(sc.value)


def test_cli_subset_and_self_consistency_with_the_dry_run_judge(tmp_path):
    out = tmp_path / "agreement.json"
    r = _cli("eval", "agreement", str(EXAMPLE), "--label-field", "human_faithfulness",
             "-o", str(out), "--dry-run", "--dimensions", "helpfulness,logicality",
             "--no-progress", "--baselines", "none", "--limit", "3",
             "--self-consistency", "2", "--self-consistency-repeats", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stderr.split())
    assert "agreement with human labels: 2 pairs, 3 prompts (a subset: 3 of 20 prompts)" in text
    assert "when to trust the reward" in text and "self_consistency" in text
    result = AgreementResult.read(out)
    assert result.subset.limit == 3 and result.prompts == 3
    sc = result.diagnostic("self_consistency")
    assert sc.n == 2 and sc.details["repeats"] == 2 and sc.details["calls"] > 0
    r = _cli("eval", "agreement", str(EXAMPLE), "--label-field", "human_faithfulness",
             "-o", str(out), "--dry-run", "--no-progress", "--prompts", "article_99",
             cwd=tmp_path)
    assert r.returncode == 2 and "article_99" in r.stderr and "article_0" in r.stderr


def test_result_files_read_back_and_bad_ones_are_named(tmp_path):
    minimal = {"kind": "longreward.eval.agreement", "version": 1, "data": "d.jsonl",
               "scored": "r.scored.jsonl", "run_dir": "r.run", "format": "pairwise",
               "prompts": 1, "answers": 2, "pairs": 1, "tie_rule": "half",
               "tie_rule_text": "…", "bootstrap": {"resamples": 0, "seed": 0, "level": 0.95},
               "dimensions": ["helpfulness"],
               "methods": [{"name": "reward", "group": "reward", "accuracy": 1.0,
                            "ci": [None, None], "n": 1, "agree": 1, "disagree": 0, "ties": 0,
                            "abstained": 0, "cost": {"requests": 2, "calls": 2}}],
               "a_key_from_a_later_version": True}
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(minimal))
    r = AgreementResult.read(old)  # written before diagnostics and subsets existed
    assert r.reward.accuracy == 1.0 and r.diagnostics == [] and r.subset is None
    assert r.method("reward").cost.calls == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**minimal, "methods": [{"name": "reward"}]}))
    with pytest.raises(UsageError, match=r"bad\.json.*methods\.0\.group"):
        AgreementResult.read(bad)
