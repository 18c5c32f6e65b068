"""Tolerant parsers for tagged-text judge replies (used when an endpoint has no JSON schema
support). Every parser first drops reply lines that repeat the prompt verbatim, then reads the
judge's *last* tagged value, so an echoed template or few-shot example is never taken for the
judge's own verdict. A reply with nothing parsable raises ``ReplyParseError``; the client then
re-asks (``ModelClient.ask``)."""

from __future__ import annotations

import re

from ...judge import ReplyParseError

_BRACKET = re.compile(r"\[\[\s*([^\[\]]{1,40}?)\s*\]\]")
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)(?:\s*/\s*10)?$")


def _normalise(line: str) -> str:
    return " ".join(line.split())


def strip_echo(reply: str, prompt_text: str) -> str:
    """Remove lines of ``reply`` that also occur, whole, in the prompt (a judge copying its
    instructions or examples). Short lines such as "Analysis:" are kept: they carry nothing
    a parser could mistake for a verdict on their own."""
    prompt_lines = {_normalise(ln) for ln in prompt_text.splitlines() if len(ln.strip()) >= 12}
    kept = [ln for ln in reply.splitlines() if _normalise(ln) not in prompt_lines]
    return "\n".join(kept)


def parse_score(reply: str, prompt_text: str, *, low: float = 0.0, high: float = 10.0) -> float:
    """The last ``[[N]]`` with a number in [low, high]."""
    text = strip_echo(reply, prompt_text)
    for raw in reversed(_BRACKET.findall(text)):
        m = _NUMBER.match(raw.strip())
        if m:
            value = float(m.group(1))
            if low <= value <= high:
                return value
            raise ReplyParseError(f"score {value:g} outside {low:g}–{high:g}")
    raise ReplyParseError("no score in [[N]] form found in the reply")


_SUPPORT_WORDS = {
    "fully": "fully", "fully supported": "fully", "完全支持": "fully", "完全": "fully",
    "partially": "partially", "partially supported": "partially", "部分支持": "partially",
    "部分": "partially",
    "not": "not", "not supported": "not", "unsupported": "not", "不支持": "not",
    "无支持": "not", "没有支持": "not",
}


def parse_choice(reply: str, prompt_text: str, words: dict[str, str] | None = None) -> str:
    """The last ``[[word]]`` whose word maps to a known label."""
    words = words or _SUPPORT_WORDS
    text = strip_echo(reply, prompt_text)
    for raw in reversed(_BRACKET.findall(text)):
        key = raw.strip().lower()
        if key in words:
            return words[key]
    raise ReplyParseError(f"no verdict among [[{']], [['.join(sorted(set(words.values())))}]]")


def parse_tagged_list(reply: str, prompt_text: str, tag: str) -> list[str]:
    """Contents of ``<tag>…</tag>`` pairs; ``<none/>`` (with no pairs) means an empty list."""
    text = strip_echo(reply, prompt_text)
    items = [m.strip() for m in re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S | re.I)]
    items = [i for i in items if i and i != "..." and i != "…"]
    if items:
        return items
    if re.search(r"<none\s*/?>", text, flags=re.I):
        return []
    raise ReplyParseError(f"no <{tag}>…</{tag}> items and no <none/> in the reply")


def parse_bullets(reply: str, prompt_text: str) -> list[str]:
    """Lines starting with "- " (used for the logicality error list); "none" means empty."""
    text = strip_echo(reply, prompt_text)
    return [ln.strip()[2:].strip() for ln in text.splitlines()
            if ln.strip().startswith("- ") and ln.strip()[2:].strip().lower() not in
            {"none", "无", "没有"}]
