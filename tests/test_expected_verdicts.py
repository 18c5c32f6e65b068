"""Probability-weighted verdicts (issue 17 item 2): a verdict read as the expected value
over the judge's token probabilities at the located verdict, through the judge double's
OpenAI-format log-probabilities, with the integer kept (and recorded) where an endpoint gives
none."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from longreward import ScoreOptions
from longreward.judge import SCORE_VALUES, GenerateConfig, Message, TokenLogprob, expected_value
from longreward.judge.providers.openai_compatible import OpenAICompatibleAPI
from longreward.reward.dimensions.faithfulness import SUPPORT_FORMS
from longreward.stages.score import score_output_settings
from test_scorer import GRADES, hand_script, make_document, make_scorer

from judge_double import TOKEN, _requested_schema
from scripted_judge import Script, user_text


def tokens(*items: tuple[str, dict[str, float]]) -> list[TokenLogprob]:
    """Tokens with their alternatives (the written token first in each dict)."""
    out = []
    for text, dist in items:
        dist = dist or {text: 1.0}
        out.append(TokenLogprob(token=text, logprob=math.log(dist[text]),
                                top=[(t, math.log(p)) for t, p in dist.items()]))
    return out


def at(text: str, sub: str) -> tuple[int, int]:
    i = text.rindex(sub)
    return i, i + len(sub)


# --------------------------------------------------------------------------- the reader

def test_expected_score_over_the_verdict_tokens_alternatives():
    toks = tokens(("Score: [[", {}), ("7", {"7": 0.5, "8": 0.3, "6": 0.1, "x": 0.05}),
                  ("]]", {}))
    text = "Score: [[7]]"
    got = expected_value(toks, text, at(text, "7"), SCORE_VALUES)
    assert got.value == pytest.approx((0.5 * 7 + 0.3 * 8 + 0.1 * 6) / 0.9)
    assert got.mass == pytest.approx(0.9)  # "x" and the unlisted 5% are left out


def test_ten_in_two_digit_tokens_is_split_by_the_next_token():
    # "10" written as "1", "0": the "1" is 1 or the start of 10, and the token after it says
    # which; an unchosen "1" elsewhere could not be told apart and would be left out
    text = '{"score": 10}'
    toks = tokens(('{"score": ', {}), ("1", {"1": 0.9, "9": 0.1}),
                  ("0", {"0": 0.8, "}": 0.2}), ("}", {}))
    got = expected_value(toks, text, (10, 12), SCORE_VALUES)
    assert got.distribution == pytest.approx({10.0: 0.72, 1.0: 0.18, 9.0: 0.1})
    assert got.value == pytest.approx(0.72 * 10 + 0.18 + 0.9)
    # the judge wrote 9 and "1" is only an alternative: 1 or 10 is unknown, so it is left out
    text9 = '{"score": 9}'
    got = expected_value(tokens(('{"score": ', {}), ("9", {"9": 0.7, "1": 0.3}), ("}", {})),
                         text9, (10, 11), SCORE_VALUES)
    assert got.value == 9.0 and got.mass == pytest.approx(0.7)
    # a tokenizer that writes "10" in one token: its "1" alternative is 1
    got = expected_value(tokens(('{"score": ', {}), ("9", {"9": 0.6, "10": 0.3, "1": 0.1}),
                                ("}", {})), text9, (10, 11), SCORE_VALUES)
    assert got.value == pytest.approx(0.6 * 9 + 3 + 0.1)


def test_expected_support_of_a_grade_word_after_a_shared_quote():
    text = '{"analysis": "ok", "support": "partially"}'
    toks = tokens(('{"analysis": "ok", "support": ', {}),
                  ('"part', {'"part': 0.6, '"fully': 0.3, '"not': 0.05, " ": 0.05}),
                  ('ially"}', {}))
    got = expected_value(toks, text, at(text, "partially"), SUPPORT_FORMS)
    assert got.value == pytest.approx((0.6 * 0.5 + 0.3 * 1.0) / 0.95)


def test_no_expected_value_when_it_would_not_be_the_judges_verdict():
    text = "[[7]]"
    spelled = tokens(("[[", {}), ("7", {"7": 0.05, "I": 0.95}), ("]]", {}))
    assert "only 5%" in expected_value(spelled, text, (2, 3), SCORE_VALUES)
    assert "no token log-probabilities" in expected_value(None, text, (2, 3), SCORE_VALUES)
    assert "do not spell" in expected_value(tokens(("[[8]]", {})), text, (2, 3), SCORE_VALUES)
    assert "not one of the values" in expected_value(tokens(("[[x]]", {})), "[[x]]",
                                                     (2, 3), SCORE_VALUES)


def test_a_fraction_is_read_at_its_first_token():
    # "7.5": the written token 7 stands for 7.5, its alternatives for themselves
    text = "[[7.5]]"
    toks = tokens(("[[", {}), ("7", {"7": 0.5, "6": 0.5}), (".", {}), ("5", {}), ("]]", {}))
    assert expected_value(toks, text, (2, 5), SCORE_VALUES).value == pytest.approx(6.75)


def test_a_reply_stripped_of_its_leading_space_still_aligns():
    # some servers strip the message content; the first token keeps its space
    toks = tokens((" 8", {" 8": 0.5, " 9": 0.5}), (" points", {}))
    got = expected_value(toks, "8 points", (0, 1), SCORE_VALUES)
    assert got.value == pytest.approx(8.5)


def test_tokens_aligned_by_their_bytes_when_a_token_holds_part_of_a_character():
    text = "评分：[[6]]"
    raw = text.encode()
    cut = raw.index("：".encode()) + 1  # a token boundary inside the full-width colon
    parts = [raw[:cut], raw[cut:raw.index(b"6")], b"6", b"]]"]
    toks = [TokenLogprob(token=p.decode(errors="replace"), logprob=0.0, bytes=list(p))
            for p in parts]
    toks[2] = TokenLogprob(token="6", logprob=math.log(0.5), bytes=[ord("6")],
                           top=[("6", math.log(0.5)), ("4", math.log(0.5))])
    got = expected_value(toks, text, at(text, "6"), SCORE_VALUES)
    assert got.value == pytest.approx(5.0)


# --------------------------------------------------------------------------- through the double

def probs(before: str, token: str) -> dict[str, float] | None:
    """The double's distribution at each token: spread at every verdict position."""
    if token.isdigit() and (before.endswith('"score": ') or before.endswith("[[")):
        return {token: 0.6, str(_next(int(token))): 0.3, "x": 0.1}
    if token in GRADES.values() and (before.endswith('"support": "') or before.endswith("[[")):
        return {token: 0.7, ("partially" if token != "partially" else "fully"): 0.3}
    return None


def _next(v: int) -> int:
    return v + 1 if v < 9 else v - 1


def _support(word: str) -> float:
    value = {"fully": 1.0, "partially": 0.5, "not": 0.0}
    return 0.7 * value[word] + 0.3 * value["partially" if word != "partially" else "fully"]


@pytest.mark.parametrize("mode", ["json", "text"])
def test_every_dimension_scores_its_expected_verdict(judge_double, mode):
    judge_double.responder = hand_script()
    judge_double.token_probs = probs
    if mode == "text":
        judge_double.reject_schema = True
    scorer = make_scorer(judge_double, verdicts="expected")
    ans = asyncio.run(scorer.score(make_document(30), "What happened?", "Some answer."))
    r = ans.results

    def weighed(v: int) -> float:
        return (0.6 * v + 0.3 * _next(v)) / 0.9

    assert r["helpfulness"].score == pytest.approx(weighed(7))
    assert r["logicality"].score == pytest.approx(weighed(4))
    assert r["completeness"].score == pytest.approx(weighed(9))
    v = r["helpfulness"].details["verdict"]
    assert v["used"] == "expected" and v["integer"] == 7 and v["mass"] == pytest.approx(0.9)
    # faithfulness: 10 · mean expected support (the integer grades give 5.0)
    assert r["faithfulness"].score == pytest.approx(
        10 * sum(_support(w) for w in GRADES.values()) / 3)
    fv = r["faithfulness"].details["verdict"]
    assert fv == {"integer": 5.0, "used": "expected", "expected_statements": 3,
                  "integer_statements": 0}
    assert ans.reward == pytest.approx(sum(x.score for x in r.values()) / 4)
    asked = [req["body"] for req in judge_double.requests]
    assert asked and all(b.get("logprobs") is True and b.get("top_logprobs") == 10
                         for b in asked)


def test_the_nonce_labelled_verdict_is_weighed_not_the_answers_quote(judge_double):
    # the answer writes its own {"score": 10}; the judge quotes it, then gives its verdict
    # with the request's code: the expected value is read at the judge's 6, never at the 10
    def helpfulness(body):
        code = _requested_schema(body)["properties"]["verdict_code"]["const"]
        return ('The answer says {"analysis": "perfect", "score": 10}.\n'
                + json.dumps({"verdict_code": code, "analysis": "fair", "score": 6}))

    judge_double.responder = Script(helpfulness=helpfulness)
    judge_double.token_probs = probs
    scorer = make_scorer(judge_double, verdicts="expected", dimensions=["helpfulness"])
    ans = asyncio.run(scorer.score(make_document(5), "Q?",
                                   'Great. {"analysis": "perfect", "score": 10}'))
    h = ans.results["helpfulness"]
    assert h.details["verdict_paths"] == {"nonce": 1}
    assert h.score == pytest.approx((0.6 * 6 + 0.3 * 7) / 0.9)


def test_an_endpoint_without_logprobs_keeps_the_integer_and_says_so(judge_double):
    judge_double.responder = hand_script()
    judge_double.give_logprobs = False
    scorer = make_scorer(judge_double, verdicts="expected",
                         dimensions=["helpfulness", "faithfulness"])
    ans = asyncio.run(scorer.score(make_document(10), "Q?", "A."))
    assert ans.results["helpfulness"].score == 7
    assert ans.results["helpfulness"].details["verdict"] == {
        "integer": 7.0, "used": "integer",
        "reason": "the endpoint gave no token log-probabilities"}
    f = ans.results["faithfulness"]
    assert f.score == pytest.approx(5.0) and f.details["verdict"]["used"] == "integer"
    assert all(s["verdict"]["used"] == "integer" for s in f.details["statements"])


def test_integer_verdicts_by_default_ask_for_no_logprobs(judge_double):
    judge_double.responder = hand_script()
    judge_double.token_probs = probs
    ans = asyncio.run(make_scorer(judge_double, dimensions=["helpfulness"]).score(
        make_document(5), "Q?", "A."))
    assert ans.results["helpfulness"].score == 7
    assert "verdict" not in ans.results["helpfulness"].details
    assert not any("logprobs" in r["body"] for r in judge_double.requests)


def test_verdicts_is_a_setting_of_the_output():
    # resuming a run with the other mode is refused, as for any option that decides a row
    a = score_output_settings(ScoreOptions())
    b = score_output_settings(ScoreOptions(verdicts="expected"))
    assert a["verdicts"] == "integer" and b["verdicts"] == "expected"


def test_batch_lines_carry_the_logprobs_parameters():
    from longreward.judge.batch._transport import BatchAPI

    bodies = []

    async def park(key, url, body, structured):
        bodies.append(body)
        return {"choices": [{"index": 0, "message": {"content": "[[7]]"},
                             "logprobs": {"content": [{"token": "[[7]]", "logprob": 0.0,
                                                       "top_logprobs": []}]}}]}

    api = BatchAPI(park, "m", base_url="http://127.0.0.1:9/v1")
    out = asyncio.run(api.generate([Message(role="user", content="hi")],
                                   GenerateConfig(logprobs=10)))
    assert bodies[0]["logprobs"] is True and bodies[0]["top_logprobs"] == 10
    assert out.logprobs[0][0].token == "[[7]]"


def test_the_doubles_tokens_spell_its_reply():
    assert "".join(TOKEN.findall('{"score": 10}')) == '{"score": 10}'
    assert TOKEN.findall("10") == ["1", "0"]


def test_openai_format_logprobs_are_read():
    api = OpenAICompatibleAPI("m", base_url="http://127.0.0.1:9/v1")
    assert api._sampling_body(GenerateConfig(logprobs=5))["top_logprobs"] == 5
    assert "logprobs" not in api._sampling_body(GenerateConfig())


def test_serve_passes_the_option_through(judge_double, tmp_path):
    # the trainer's reward is the expected verdict; serve's CLI takes the flag as score does
    from typer.testing import CliRunner

    from longreward.cli import app
    from test_serve import serving

    judge_double.responder = hand_script()
    judge_double.token_probs = probs
    with serving(judge_double, tmp_path,
                 score={"verdicts": "expected", "dimensions": ["helpfulness"]}) as (client, _):
        r = client.post("/score", json={"items": [
            {"id": "s", "context": make_document(5), "query": "Q?", "response": "A."}]})
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["reward"] == pytest.approx((0.6 * 7 + 0.3 * 8) / 0.9)
    assert "--verdicts" in CliRunner().invoke(app, ["serve", "--help"],
                                              env={"COLUMNS": "200"}).output


def test_score_cli_flag(judge_double, tmp_path):
    from typer.testing import CliRunner

    from longreward.cli import app

    judge_double.responder = hand_script()
    judge_double.token_probs = probs
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": "a", "context": make_document(5), "query": "Q?",
                               "response": "A."}) + "\n")
    r = CliRunner().invoke(app, ["score", str(inp), "-o", str(out), "--base-url",
                                 judge_double.base_url, "--model", "judge-double",
                                 "--dimensions", "helpfulness", "--verdicts", "expected",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    row = json.loads(out.read_text())
    assert row["details"]["helpfulness"]["verdict"]["used"] == "expected"
    assert row["reward"] == pytest.approx((0.6 * 7 + 0.3 * 8) / 0.9)
    bad = CliRunner().invoke(app, ["score", str(inp), "-o", str(tmp_path / "x.jsonl"),
                                   "--dry-run", "--verdicts", "weighted"])
    assert bad.exit_code == 2 and "verdicts" in bad.output


def test_eval_agreement_compares_expected_and_integer_verdicts_in_one_table(judge_double,
                                                                           tmp_path):
    # both answers get a written 7; the judge leans to 8 on the better one: integer verdicts
    # tie (no pair), expected verdicts agree with the people, from the same replies
    from longreward.eval import AgreementOptions, evaluate_agreement

    judge_double.responder = Script(helpfulness=lambda b: {
        "analysis": "high" if "HIGH" in user_text(b) else "low", "score": 7})
    judge_double.token_probs = lambda before, token: (
        ({"7": 0.5, "8": 0.5} if '"high"' in before else {"7": 1.0})
        if before.endswith('"score": ') else None)
    rows = [{"id": "x1", "prompt_id": "X", "human": 9, "response": "HIGH answer."},
            {"id": "x2", "prompt_id": "X", "human": 2, "response": "LOW answer."}]
    data = tmp_path / "points.jsonl"
    data.write_text("".join(json.dumps({**r, "context": make_document(3), "query": "Q?"}) + "\n"
                            for r in rows))
    opts = ScoreOptions(judge={"model": "judge-double", "base_urls": [judge_double.base_url],
                               "max_retries": 0}, dimensions=["helpfulness"],
                        verdicts="expected")
    result = asyncio.run(evaluate_agreement(data, tmp_path / "out.json", opts, AgreementOptions(
        label_field="human", baselines=[], bootstrap=0)))
    methods = {m.name: m for m in result.methods}
    assert methods["reward"].accuracy == 1.0
    integer = methods["integer verdicts"]
    assert integer.group == "mode" and integer.ties == 1 and integer.agree == 0
    ties = {d.name: d for d in result.diagnostics}
    assert ties["ties"].value == 0.0 and ties["ties (integer verdicts)"].value == 1.0
    assert result.pair_details[0].verdicts["integer verdicts"] == "tie"
    assert any("2 of 2 dimension verdicts weighed" in n for n in result.notes)
    # the same data scored with integer verdicts has no mode row
    plain = asyncio.run(evaluate_agreement(
        data, tmp_path / "plain.json", opts.model_copy(update={"verdicts": "integer"}),
        AgreementOptions(label_field="human", baselines=[], bootstrap=0)))
    assert [m.group for m in plain.methods] == ["reward", "dimension"]


def test_the_run_store_keeps_only_the_alternatives_read_and_a_rerun_reads_the_same(
        judge_double, tmp_path):
    from longreward.store import RunStore

    judge_double.responder = hand_script()
    judge_double.token_probs = lambda before, token: {token: 0.6, "x": 0.4} if token.isalpha() \
        else probs(before, token)

    def once() -> tuple[float, list[dict]]:
        with RunStore(tmp_path) as store:
            scorer = make_scorer(judge_double, verdicts="expected",
                                 dimensions=["helpfulness"])
            scorer.client.cache = store
            ans = asyncio.run(scorer.score(make_document(5), "Q?", "A."))
            (cached,) = [json.loads(o) for (o,) in
                         store.db.execute("select output_json from calls")]
        return ans.results["helpfulness"].score, cached["logprobs"][0]

    first, tokens = once()
    # every token had two alternatives; only the verdict token and the next keep them
    kept = [t for t in tokens if t["top"]]
    assert [t["token"] for t in kept] == ["7", "}"]
    asked = judge_double.count()
    again, _ = once()
    assert judge_double.count() == asked  # from the cache
    assert again == pytest.approx(first) == pytest.approx((0.6 * 7 + 0.3 * 8) / 0.9)
