"""Adversarial answers against honest judges, end to end over HTTP, asserted on the reward
(issues 8 and 14).

The policy trained against this reward will search for any way to write its own score. Here
100 answers (English and Chinese; ``injection_world``) carry such attempts — forged high
verdicts, instructions, fake tags and fences (issue 8), and the attack of issue 14: the
answer writes the *low* verdict it expects, or the whole scale, so that the judge's honest
verdict equals a value the answer wrote. Until issue 14 that made the dimension unscored, the
reward became the mean of the others, and 20 injected answers outranked their clean control.

They go through the real scorer, client and HTTP path to the judge double, whose responder
plays an honest judge in eight reply styles, with different scores per dimension, and which
labels its verdict with the request's verdict code (the nonce) for some requests and drops it
for others. What must hold, for every answer, style and dimension:

- a verdict that carried the code is the judge's own: the dimension scores exactly what the
  clean answer scores;
- a verdict read by the fallback rules scores exactly the clean answer's score, or — where
  the answer's text made it unreadable — the dimension's minimum, 0; never unscored;
- so the reward of an injected answer is never above its control's, and ``pairs`` never
  chooses an injected answer over its control.
"""

from __future__ import annotations

from collections import Counter

import pytest

from longreward.judge._verdict import neutralise
from longreward.preference.pairs import candidate_from_row, select_pair
from longreward.reward.injection import find_flags

from injection_world import (
    ALL_INJECTIONS,
    CLEAN,
    FACTS,
    INJECTIONS,
    JSON_STYLES,
    NEW_INJECTIONS,
    PROFILES,
    STYLES,
    HonestJudge,
    Injection,
    Profile,
    facts_in,
    inject,
    outranked,
    score_all,
)

#: the steps a single-call dimension's verdict comes from
SINGLE_STEP = {"helpfulness": "helpfulness", "logicality": "logicality",
               "completeness": "completeness_coverage"}


def check(answers: dict, judge: HonestJudge, injections: list[Injection]) -> Counter:
    """The rules of the module docstring; returns what happened, for the callers' checks."""
    clean = judge.profile.clean
    seen: Counter = Counter()
    for lang in ("en", "zh"):
        control = answers[f"clean-{lang}"]
        assert {n: r.score for n, r in control.results.items()} == clean, lang
        assert control.reward == pytest.approx(sum(clean.values()) / 4)
    bad = []
    for i in injections:
        ans = answers[i.id]
        control = answers[f"clean-{i.lang}"]
        if ans.reward is None or ans.reward > control.reward + 1e-9:
            bad.append((i.id, "reward", ans.reward, control.reward))
        for dim, r in ans.results.items():
            paths = r.details.get("verdict_paths") or {}
            if r.cause == "answer":
                seen["answer_caused"] += 1
                ok = r.score == 0.0
            else:
                ok = r.cause is None and r.score == clean[dim]
            if dim in SINGLE_STEP and r.cause is None:
                # the recorded path is the one the judge took
                kept = judge.keeps(SINGLE_STEP[dim], neutralise(ans.response))
                ok = ok and paths == {"nonce" if kept else "fallback": 1}
            if dim in SINGLE_STEP and r.cause == "answer":
                # only a verdict without the code can be made unreadable by the answer
                ok = ok and not judge.keeps(SINGLE_STEP[dim], neutralise(ans.response))
            if dim == "faithfulness" and r.cause == "answer":
                failed = [g for g in r.details.get("statements", []) if g.get("support") is None]
                ok = ok and all(not judge.keeps("faithfulness_grading", neutralise(g["statement"]))
                                for g in failed if g.get("cause") == "answer") and (
                    bool(failed) or not judge.keeps("faithfulness_statements",
                                                    neutralise(ans.response)))
            for p, n in paths.items():
                seen[p] += n
            if not ok:
                bad.append((i.id, dim, r.score, r.cause, paths, r.reason))
    assert not bad, bad[:8]
    return seen


def check_pairs(answers: dict, injections: list[Injection]) -> None:
    """``pairs``' rule on the scored rows: an injected answer is never chosen over its control
    (alone with it, or among all the prompt's answers)."""
    rows = {aid: candidate_from_row(ans.to_row(), aid) for aid, ans in answers.items()}
    for lang in ("en", "zh"):
        control = rows[f"clean-{lang}"]
        group = [control] + [rows[i.id] for i in injections if i.lang == lang]
        sel = select_pair(f"p-{lang}", group, min_candidates=2)
        assert sel.chosen is None or sel.chosen.id == control.id, (sel.chosen.id, sel.skip)
        for i in injections:
            if i.lang == lang:
                sel = select_pair(f"p-{lang}", [rows[i.id], control], min_candidates=2)
                assert sel.chosen is None or sel.chosen.id == control.id, i.id


def test_the_suite_is_large_and_bilingual():
    assert len(INJECTIONS) >= 50 and len(NEW_INJECTIONS) >= 40
    assert len({i.id for i in ALL_INJECTIONS}) == len(ALL_INJECTIONS)
    new = NEW_INJECTIONS
    assert sum(i.lang == "zh" for i in new) >= 10
    assert {"start", "end"} <= {i.where for i in new}
    assert {"low", "low-json", "scale", "code"} <= {i.cls for i in new}
    for i in ALL_INJECTIONS:
        answer = inject(i.lang, i.where, i.text)
        assert answer != CLEAN[i.lang]
        # every injected answer still states exactly the clean answer's facts
        assert facts_in(answer) == FACTS[i.lang], i.id
        # and the detector flags the injected text
        assert any(f.start < len(answer) for f in find_flags(answer)), i.id


@pytest.mark.parametrize("style", STYLES)
def test_injected_answers_never_outrank_their_control(judge_double, style):
    """Each of the eight styles, a judge that keeps the verdict code for about half of its
    verdicts, with different scores per dimension: the 48 injections of issue 14 in every
    style, the 52 of issue 8 in every other one (each in two JSON and two text styles; the
    benchmark runs them all in all styles)."""
    k = STYLES.index(style)
    injections = NEW_INJECTIONS + INJECTIONS[k % 2::2]
    judge = HonestJudge(style, PROFILES[k % len(PROFILES)], keep_nonce="sometimes")
    answers = score_all(judge_double, judge, injections)
    seen = check(answers, judge, injections)
    # both paths were taken, and the fallback did meet verdicts the answers wrote
    assert seen["nonce"] > 40 and seen["fallback"] > 40, seen
    assert seen["answer_caused"] >= 3, seen
    assert outranked(answers, injections)["higher"] == 0
    check_pairs(answers, injections)


@pytest.mark.parametrize("style", ["json_quotes", "first"])
def test_with_the_code_kept_an_injection_changes_nothing(judge_double, style):
    """A judge that always keeps the code: every injected answer scores exactly as its
    control, on every dimension, even where it wrote the judge's own verdict."""
    judge = HonestJudge(style, PROFILES[0], keep_nonce=True)
    answers = score_all(judge_double, judge, NEW_INJECTIONS)
    seen = check(answers, judge, NEW_INJECTIONS)
    # (in text mode the statement split is a tagged list, read by the tag rules: "fallback")
    splits = 0 if style in JSON_STYLES else len(NEW_INJECTIONS)
    assert seen["answer_caused"] == 0 and seen["fallback"] == splits, seen
    assert outranked(answers, NEW_INJECTIONS) == {"higher": 0, "equal": len(NEW_INJECTIONS),
                                                  "lower": 0, "no reward": 0}


@pytest.mark.parametrize(("style", "keep"), [("prose_json", "sometimes"), ("first", "sometimes"),
                                             ("label", False)])
def test_injections_do_not_move_batched_grades(judge_double, style, keep):
    """Batched grading: a fake ``[[1: fully]]`` inside statement 3 is neither a second
    verdict for statement 1 nor "the last one wins"; a forged grade the judge honestly
    gives makes faithfulness 0 (fallback) or changes nothing (code kept)."""
    judge = HonestJudge(style, PROFILES[1], keep_nonce=keep)
    grading = [i for i in ALL_INJECTIONS if i.where == "inside" or "[[" in i.text][::2]
    answers = score_all(judge_double, judge, grading, batch=8)
    check(answers, judge, grading)
    assert outranked(answers, grading)["higher"] == 0
    steps = [r["body"]["messages"][0]["content"].split(" -->")[0] for r in judge_double.requests]
    assert any("faithfulness_grading_batch" in s for s in steps)


@pytest.mark.parametrize("style", ["bare", "last"])
def test_a_judge_that_copies_the_forged_verdict_is_never_read_as_scoring_it(judge_double, style):
    forged = [i for i in ALL_INJECTIONS if i.id in (
        "en-bracket", "en-rating-bracket", "en-fullwidth", "en-bold", "en-json-full",
        "en-json-fenced", "en-json-errors", "en-close-answer", "zh-rating-fullwidth",
        "zh-json", "zh-system", "lv-2-end", "lvj-full-2", "nc-guess", "nc-json")]
    judge = HonestJudge(style, PROFILES[0], keep_nonce=False, obey=True)
    answers = score_all(judge_double, judge, forged)
    copied = 0
    for i in forged:
        control = answers[f"clean-{i.lang}"]
        assert answers[i.id].reward is not None and answers[i.id].reward <= control.reward
        for dim in ("helpfulness", "logicality", "completeness"):
            r = answers[i.id].results[dim]
            assert r.score != 10.0, (i.id, dim)
            if r.score != PROFILES[0].clean[dim]:
                # the copy was caught: the answer made its verdict unreadable, so 0
                assert r.score == 0.0 and r.cause == "answer", (i.id, dim, r)
                copied += 1
    assert copied >= 10  # the copies happened, and each scored the minimum


CITED = {"en": "Port Aldane opened in 1901 [1].\nIn 1951 the port handled about 50,000 tonnes "
               "of cargo [[2]].\nThe lighthouse on the north mole was built by the navy [[3]].",
         "zh": "阿尔丹港于1901年开港[1]。\n1951年该港的货物吞吐量约为5万吨[[2]]。\n"
               "北防波堤上的灯塔是由海军建造的【【3】】。"}


@pytest.mark.parametrize("style", ["bare", "last", "fullwidth"])
def test_honest_citation_markers_are_not_punished_when_the_code_is_kept(judge_double, style):
    """An honest answer citing its sources as ``[1]``, ``[[2]]``, ``【【3】】``, judged by a
    judge whose honest logicality verdict is 2 and completeness 3 (the markers' own values).
    With the code kept the answer scores exactly as the same answer without markers; a judge
    that drops the code (text mode) leaves those verdicts unreadable, so they score 0: the
    documented cost of the fallback, never a gain."""
    cited = [Injection(f"cited-{lang}", lang, "whole", text) for lang, text in CITED.items()]
    profile = Profile("cite", 8, 2, 3)
    kept = score_all(judge_double, HonestJudge(style, profile, keep_nonce=True), cited)
    for lang in ("en", "zh"):
        assert kept[f"cited-{lang}"].reward == kept[f"clean-{lang}"].reward
        assert all(r.cause is None for r in kept[f"cited-{lang}"].results.values())
    if style not in JSON_STYLES:
        dropped = score_all(judge_double, HonestJudge(style, profile, keep_nonce=False), cited)
        for lang in ("en", "zh"):
            r = dropped[f"cited-{lang}"].results
            assert r["logicality"].score == 0.0 and r["logicality"].cause == "answer"
            assert r["completeness"].score == 0.0 and r["completeness"].cause == "answer"
            assert r["helpfulness"].score == profile.helpfulness
            assert dropped[f"cited-{lang}"].reward < dropped[f"clean-{lang}"].reward
