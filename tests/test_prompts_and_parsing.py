"""Prompt files fill strictly; text parsers read the judge's own verdict, never the template."""

from __future__ import annotations

import pytest

from longreward.judge import ReplyParseError
from longreward.reward.dimensions import MissingVariablesError, load_prompt
from longreward.reward.dimensions._parse import (
    parse_bullets,
    parse_choice,
    parse_score,
    parse_tagged_list,
)
from longreward.reward.dimensions.faithfulness import parse_batch_grade_text

PROMPTS = {
    "helpfulness": {"query", "response"},
    "logicality": {"query", "response"},
    "faithfulness_statements": {"query", "response"},
    "faithfulness_grading": {"evidence", "statement"},
    "faithfulness_grading_batch": {"evidence", "statements"},
    "completeness_extraction": {"position", "chunk", "query"},
    "completeness_coverage": {"query", "points", "response"},
}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_every_prompt_loads_with_its_variables(name, lang):
    p = load_prompt(name, lang)
    assert p.variables == PROMPTS[name]
    values = {v: f"<<{v}>>" for v in p.variables}
    for mode in ("json", "text"):
        system, user = p.messages(mode, **values)
        assert system.role == "system" and user.role == "user"
        assert "$" not in system.content
        assert all(f"<<{v}>>" in user.content for v in p.variables)
        assert p.reply[mode] in system.content
    if lang == "zh":
        assert any("\u4e00" <= ch <= "\u9fff" for ch in p.system)


def test_missing_or_unknown_variable_is_an_error():
    p = load_prompt("helpfulness", "en")
    with pytest.raises(MissingVariablesError, match="response"):
        p.messages("json", query="q")
    with pytest.raises(MissingVariablesError, match="extra"):
        p.messages("json", query="q", response="r", extra="x")


def test_static_prefix_is_identical_across_candidates():
    p = load_prompt("completeness_coverage", "en")
    a = p.messages("json", query="q", points="- p", response="answer one")
    b = p.messages("json", query="q", points="- p", response="a different answer")
    assert a[0] == b[0]
    # the candidate comes last in the user turn, after the shared points
    assert a[1].content.index("- p") < a[1].content.index("answer one")


def test_parse_score_takes_the_last_numeric_bracket():
    assert parse_score("first [[3]] then final [[8]]", "") == 8
    assert parse_score("Score [[7.5]]", "") == 7.5
    assert parse_score("[[ 9/10 ]]", "") == 9
    with pytest.raises(ReplyParseError):
        parse_score("I give it a 7", "")
    with pytest.raises(ReplyParseError, match="outside"):
        parse_score("[[12]]", "")


def test_parser_ignores_lines_echoed_from_the_prompt():
    prompt = "Example answer analysis line that ends with a verdict [[9]]\nMore text here ok"
    reply = "Example answer analysis line that ends with a verdict [[9]]\nMy own view: weak."
    with pytest.raises(ReplyParseError):
        parse_score(reply, prompt)
    assert parse_score(reply + "\n[[4]]", prompt) == 4


def test_parse_choice_and_lists():
    assert parse_choice("analysis... [[partially]]", "") == "partially"
    assert parse_choice("分析 [[不支持]]", "") == "not"
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
    reply = "(1) ok\n[[1: fully]]\n(2) hmm\n[[2：partially]]\n[[3: not]]"
    got = parse_batch_grade_text(reply, "")
    assert [(g.statement, g.support) for g in got.grades] == [(1, "fully"), (2, "partially"),
                                                             (3, "not")]
    with pytest.raises(ReplyParseError):
        parse_batch_grade_text("[[K: VERDICT]]", "")
