"""Parsers for tagged-text judge replies (used when an endpoint takes no JSON format).

The judged answers come from the policy being trained against this reward, and it will
search for any way to write its own score (``[[10]]`` in the answer, a fake
``</statement><statement>`` item, a verdict line for statement 1 hidden in statement 3). So
every parser reads only what the judge itself wrote, by the rules of
``longreward.judge._verdict``:

- a verdict line carrying the request's nonce (``K7QF2MZX [[7]]``) is the judge's own and
  is the verdict, whatever else the reply quotes;
- without one (the fallback): lines that repeat the prompt's fixed text (an echoed template
  or few-shot example, or part of one of its lines) and lines that quote the judged text are
  removed first; a score or verdict is read only from a verdict line (``[[7]]``,
  ``Score: [[7]]``, ``【【7】】``); the last one is the verdict, and an earlier different one,
  or a value the judged text also writes for itself, is ambiguous;
- batched grades need exactly one ``[[K: VERDICT]]`` line per statement (with the nonce:
  one nonce line per statement): a repeated or missing number is an error, never "the last
  one wins";
- ``<none/>`` (no statements, no points) counts only on a line of its own: a judge quoting
  the instruction "reply with the single tag ``<none/>``" has not replied with it.

``prompt_text`` is the prompt's fixed text; as a ``PromptText`` (what ``ask_judge`` passes)
it also carries the fenced candidate texts. A reply that cannot be read raises
``ReplyParseError``; the client then re-asks, and in the end reports the step unscored with
the reason (``ModelClient.ask``).
"""

from __future__ import annotations

import re

from ...judge import (
    ReplyParseError,
    candidates_of,
    claimed,
    fold,
    locate_verdict,
    nonce_of,
    nonce_verdicts,
    read_verdict,
    strip_echo,
    verdict_line,
    verdict_lines,
    without_quotes,
)

__all__ = ["parse_bullets", "parse_choice", "parse_keyed_choices", "parse_score",
           "parse_tagged_list", "strip_echo"]

_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)(?:\s*/\s*10)?$")


def _number(x: str) -> float | None:
    m = _NUMBER.match(x.strip())
    return float(m.group(1)) if m else None


def parse_score(reply: str, prompt_text: str, *, low: float = 0.0, high: float = 10.0) -> float:
    """The judge's final ``[[N]]`` verdict line, N a number in [low, high]."""
    value = read_verdict(reply, prompt_text, _number, "[[N]]", "score")
    if not low <= value <= high:
        raise ReplyParseError(f"score {value:g} outside {low:g}–{high:g}")
    return value


_SUPPORT_WORDS = {
    "fully": "fully", "fully supported": "fully", "完全支持": "fully", "完全": "fully",
    "partially": "partially", "partially supported": "partially", "部分支持": "partially",
    "部分": "partially",
    "not": "not", "not supported": "not", "unsupported": "not", "不支持": "not",
    "无支持": "not", "没有支持": "not",
}


def parse_choice(reply: str, prompt_text: str, words: dict[str, str] | None = None) -> str:
    """The judge's final ``[[word]]`` verdict line, the word mapping to a known label."""
    words = words or _SUPPORT_WORDS
    form = f"[[{' / '.join(sorted(set(words.values())))}]]"
    return read_verdict(reply, prompt_text, lambda x: words.get(fold(x)), form)


def score_span(reply: str, prompt_text: str) -> tuple[int, int]:
    """Where ``parse_score``'s verdict is written in ``reply`` (for its token
    probabilities)."""
    return locate_verdict(reply, prompt_text, _number, "[[N]]", "score").span


def choice_span(reply: str, prompt_text: str, words: dict[str, str] | None = None
                ) -> tuple[int, int]:
    """Where ``parse_choice``'s verdict is written in ``reply``."""
    words = words or _SUPPORT_WORDS
    return locate_verdict(reply, prompt_text, lambda x: words.get(fold(x)), "[[word]]").span


def word_values(labels: dict[str, float], words: dict[str, str] | None = None
                ) -> dict[str, float]:
    """Every surface form of a choice (the labels, and the words that map to them, Chinese
    included) with the number of its label: what the expected-value reader matches tokens
    against."""
    words = words or _SUPPORT_WORDS
    return {**labels, **{w: labels[label] for w, label in words.items() if label in labels}}


_KEYED = re.compile(r"^(\d+)\s*:\s*(.+)$")


def parse_keyed_choices(reply: str, prompt_text: str, n: int,
                        words: dict[str, str] | None = None) -> dict[int, str]:
    """Batched verdicts: exactly one ``[[K: word]]`` line for each K in 1..n.

    A repeated K, a missing K, a K outside 1..n or an unknown word makes the reply invalid,
    as does a line whose (K, word) the judged text also writes (it may be a copy)."""
    words = words or _SUPPORT_WORDS

    def keyed(x: str) -> tuple[int, str | None] | None:
        m = _KEYED.match(fold(x))
        return None if m is None else (int(m.group(1)), words.get(m.group(2).strip()))

    labelled = [x for x, _ in nonce_verdicts(reply, nonce_of(prompt_text))]
    nonce_path = bool(labelled)
    quoted: list[str] = []
    if nonce_path:  # the judge's own lines: no quote or copy of the judged text among them
        own = labelled
        theirs: set[tuple[int, str | None]] = set()
    else:
        own, quoted = verdict_lines(reply, prompt_text)
        theirs = claimed(prompt_text, keyed)
    pairs = [p for p in map(keyed, own) if p is not None]
    if not pairs:
        what = "only quotes the judged text" if quoted else "has no [[K: VERDICT]] lines"
        raise ReplyParseError(f"{'ambiguous: ' if quoted else ''}the reply {what}",
                              cause="answer" if quoted else "judge")
    grades: dict[int, str] = {}
    for k, word in pairs:
        if word is None:
            raise ReplyParseError(f"the verdict for statement {k} is not one of "
                                  f"{', '.join(sorted(set(words.values())))}")
        if (k, word) in theirs:
            raise ReplyParseError(f"ambiguous: the verdict [[{k}: {word}]] also appears in the "
                                  "judged text, so it may be copied from it", cause="answer")
        if k in grades:
            raise ReplyParseError(f"statement {k} has more than one verdict line")
        grades[k] = word
    wrong = sorted(set(grades) - set(range(1, n + 1)))
    missing = sorted(set(range(1, n + 1)) - set(grades))
    copied = sorted({p[0] for p in map(keyed, quoted) if p is not None} & set(missing))
    if copied:
        raise ReplyParseError(f"ambiguous: the only verdict line for statement {copied[0]} "
                              "quotes the judged text", cause="answer")
    if wrong or missing:
        raise ReplyParseError(
            f"expected one verdict for each of statements 1–{n}"
            + (f"; missing {missing}" if missing else "") + (f"; unknown {wrong}" if wrong else ""))
    return grades


def _items(reply: str, tag: str) -> list[tuple[int, int]]:
    return [m.span(1) for m in re.finditer(rf"<{tag}>(.*?)</{tag}>", reply, flags=re.S | re.I)]


def parse_tagged_list(reply: str, prompt_text: str, tag: str) -> list[str]:
    """Contents of ``<tag>…</tag>`` pairs; ``<none/>`` (with no pairs) means an empty list.

    Items are meant to copy the judged text, so they are not dropped as quotes. But two
    adjacent items whose junction ``…</tag><tag>…`` occurs in the judged text are one item
    that the text split with its own tags: they are joined, never read as two."""
    text = strip_echo(reply, prompt_text)
    spans = _items(text, tag)
    sources = [fold(c) for c in candidates_of(prompt_text)]
    compact = ["".join(s.split()) for s in sources]
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        junction = "".join(fold(text[merged[-1][0]:end]).split()) if merged else ""
        if junction and any(junction in s for s in compact):
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    items = [text[a:b].strip() for a, b in merged]
    items = [i for i in items if i and i not in ("...", "…")]
    if items:
        return items
    if any(_none_line(ln) for ln in text.splitlines()):
        if any(re.search(r"<none\s*/?>", s) for s in sources):
            raise ReplyParseError("ambiguous: the reply's <none/> also appears in the judged text",
                                  cause="answer")
        return []
    raise ReplyParseError(f"no <{tag}>…</{tag}> items and no <none/> line in the reply")


_NONE = re.compile(r"<\s*none\s*/?\s*>", re.IGNORECASE)
_OTHER_TAGS = re.compile(r"</?\s*[a-z_]+\s*/?>|[`*>\-.。…:：]", re.IGNORECASE)


def _none_line(line: str) -> bool:
    """Whether ``line`` answers ``<none/>``: the tag with at most a few words beside it
    ("<none/>", "Statements: <none/>"). A line that says more around it quotes the
    instructions ("reply with the single tag <none/> and nothing else"), and a judge
    quoting them has not replied with the tag."""
    if not _NONE.search(line):
        return False
    rest = _OTHER_TAGS.sub(" ", _NONE.sub(" ", line)).split()
    return len(rest) <= 3 and sum(len(w) for w in rest) <= 20


def parse_bullets(reply: str, prompt_text: str) -> list[str]:
    """Lines starting with "- " (used for the logicality error list); "none" means empty.
    Lines quoting the judged text are not the judge's own findings and are left out."""
    text = without_quotes(reply, prompt_text)
    return [ln.strip()[2:].strip() for ln in text.splitlines()
            if ln.strip().startswith("- ") and ln.strip()[2:].strip().lower() not in
            {"none", "无", "没有"} and verdict_line(ln) is None]
