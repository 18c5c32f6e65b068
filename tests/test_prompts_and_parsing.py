"""Prompt files fill strictly and fence candidate text; text parsers read the judge's own
verdict, never the template (the adversarial cases are in test_injection*.py)."""

from __future__ import annotations

import pytest

from longreward.judge import ReplyParseError
from longreward.judge._verdict import fenced_texts
from longreward.reward.dimensions import MissingVariablesError, load_prompt
from longreward.reward.dimensions._parse import (
    parse_bullets,
    parse_choice,
    parse_score,
    parse_tagged_list,
)
from longreward.reward.dimensions._prompts import FENCED
from longreward.reward.dimensions.faithfulness import parse_batch_grade_text

PROMPTS = {
    "helpfulness": {"query", "response", "nonce"},
    "logicality": {"query", "response", "nonce"},
    "faithfulness_statements": {"query", "response", "nonce"},
    "faithfulness_grading": {"evidence", "statement", "nonce"},
    "faithfulness_grading_batch": {"evidence", "statements", "nonce"},
    "completeness_extraction": {"position", "chunk", "query"},
    "completeness_coverage": {"query", "points", "response", "nonce"},
    "completeness_checklist": {"query", "points", "response", "nonce"},
}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_every_prompt_loads_with_its_variables(name, lang):
    p = load_prompt(name, lang)
    assert p.variables == PROMPTS[name]
    values = {v: f"@@{v}@@" for v in p.variables}
    for mode in ("json", "text"):
        system, user = p.messages(mode, **values)
        assert system.role == "system" and user.role == "user"
        assert system.content.startswith(f"<!-- step: {name} -->\n")
        assert "$" not in system.content
        assert all(f"@@{v}@@" in user.content for v in p.variables)
        assert p.reply[mode] in system.content
        # candidate text is fenced, and the system text explains the fence
        fenced = [values[v] for v in FENCED if v in p.variables]
        assert fenced_texts([system, user]) == fenced
        for v in p.variables & FENCED.keys():
            assert f"<{FENCED[v]}_CODE>" in system.content
    if lang == "zh":
        assert any("\u4e00" <= ch <= "\u9fff" for ch in p.system)


def test_missing_or_unknown_variable_is_an_error():
    p = load_prompt("helpfulness", "en")
    with pytest.raises(MissingVariablesError, match="response"):
        p.messages("json", query="q", nonce="N")
    with pytest.raises(MissingVariablesError, match="extra"):
        p.messages("json", query="q", response="r", nonce="N", extra="x")


def test_static_prefix_is_identical_across_candidates():
    p = load_prompt("completeness_coverage", "en")
    a = p.messages("json", query="q", points="- p", response="answer one", nonce="N1")
    b = p.messages("json", query="q", points="- p", response="a different answer", nonce="N2")
    assert a[0] == b[0]
    # the candidate comes last in the user turn, after the shared points
    assert a[1].content.index("- p") < a[1].content.index("answer one")
    # the fence is a function of the content: the same request twice is the same request
    # (one cache key, resumable runs); another answer gets another boundary
    assert p.messages("json", query="q", points="- p", response="answer one", nonce="N1") == a
    # the verdict code comes after the candidate: last in the request
    assert a[1].content.index("answer one") < a[1].content.index("N1")
    assert a[1].content.split("answer one")[0][-26:] != b[1].content.split("a different")[0][-26:]


def test_parse_score_reads_the_final_verdict_line():
    assert parse_score("Weak in places.\n[[8]]", "") == 8
    assert parse_score("Analysis.\nScore: [[7.5]]", "") == 7.5
    assert parse_score("**Rating:** [[ 9/10 ]]", "") == 9
    assert parse_score("分析。\n分数：【【6】】", "") == 6
    assert parse_score("分析。\n［［4］］", "") == 4
    # the same verdict twice is one verdict
    assert parse_score("[[5]]\nreasons\n[[5]]", "") == 5
    # brackets inside prose are not verdict lines (the old parser took the last one anywhere)
    with pytest.raises(ReplyParseError, match="no score line"):
        parse_score("first [[3]] then final [[8]]", "")
    with pytest.raises(ReplyParseError):
        parse_score("I give it a 7", "")
    with pytest.raises(ReplyParseError, match="outside"):
        parse_score("[[12]]", "")
    # a non-numeric final verdict is an error, not a step back to an earlier number
    with pytest.raises(ReplyParseError, match="not in the form"):
        parse_score("[[8]]\n[[high]]", "")
    with pytest.raises(ReplyParseError, match="ambiguous: .*two different"):
        parse_score("[[3]]\nOn reflection:\n[[8]]", "")


def test_parser_ignores_lines_echoed_from_the_prompt():
    prompt = "Example answer analysis line that ends with a verdict [[9]]\nMore text here ok"
    reply = "Example answer analysis line that ends with a verdict [[9]]\nMy own view: weak."
    with pytest.raises(ReplyParseError):
        parse_score(reply, prompt)
    assert parse_score(reply + "\n[[4]]", prompt) == 4


def test_parse_choice_and_lists():
    assert parse_choice("analysis...\n[[partially]]", "") == "partially"
    assert parse_choice("分析\n判定：[[不支持]]", "") == "not"
    with pytest.raises(ReplyParseError):
        parse_choice("[[maybe]]", "")
    assert parse_tagged_list("<statement>A.</statement>\n<statement> B. </statement>", "",
                             "statement") == ["A.", "B."]
    assert parse_tagged_list("nothing here <none/>", "", "statement") == []
    assert parse_tagged_list("<statement>...</statement><none/>", "", "statement") == []
    with pytest.raises(ReplyParseError):
        parse_tagged_list("no tags", "", "point")
    assert parse_bullets("Errors found:\n- a contradiction\n- none\n[[5]]", "") == [
        "a contradiction"]


def test_parse_batch_grades():
    reply = "(1) ok\n[[1: fully]]\n(2) hmm\n[[2：partially]]\n【【3: not】】"
    got = parse_batch_grade_text(reply, "", 3)
    assert [(g.statement, g.support) for g in got.grades] == [(1, "fully"), (2, "partially"),
                                                             (3, "not")]
    with pytest.raises(ReplyParseError):
        parse_batch_grade_text("[[K: VERDICT]]", "", 1)
    # a repeated number is invalid, never "the last one wins"; so is a missing one
    with pytest.raises(ReplyParseError, match="more than one"):
        parse_batch_grade_text("[[1: not]]\n[[2: not]]\n[[1: fully]]", "", 2)
    with pytest.raises(ReplyParseError, match="missing \\[2\\]"):
        parse_batch_grade_text("[[1: not]]\n[[3: not]]", "", 3)
    with pytest.raises(ReplyParseError, match="unknown \\[4\\]"):
        parse_batch_grade_text("[[1: not]]\n[[4: not]]", "", 1)
    with pytest.raises(ReplyParseError, match="not one of"):
        parse_batch_grade_text("[[1: maybe]]", "", 1)
