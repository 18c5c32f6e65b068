"""Sentence splitting for English and Chinese.

Used to cut answers into candidate statements (faithfulness) and to find chunk boundaries.
Rules, not a model: a judge later decides which sentences are factual statements, so an
occasional merge or split costs little, while a dependency-free splitter runs everywhere.
"""

from __future__ import annotations

import re

from longreward.text.language import detect_language

__all__ = ["split_sentences"]

# Lower-cased, without the final period. "etc." is left out on purpose: it often ends a
# sentence, and it is only taken as one when the next word is capitalised.
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt vs v e.g i.e cf fig figs no nos vol vols pp p approx
    est inc ltd co corp dept univ gen col lt sgt capt rev hon jan feb mar apr jun jul aug sep
    sept oct nov dec al ed eds eq eqs ch sec u.s u.k a.m p.m ph.d
    """.split()  # noqa: SIM905 - a word list reads and diffs better as text
)

_CJK_END = "。！？；"
_CLOSERS = "\"'”’」』）)]》"
# A run of terminators, then closing quotes/brackets.
_END_RE = re.compile(rf"(?:[{_CJK_END}]+|[.!?…]+)[{re.escape(_CLOSERS)}]*")
_BULLET_RE = re.compile(r"^\s*(?:[-*•·‣▪●]|\d{1,3}[.)、]|[a-zA-Z][.)]|[（(]\d{1,3}[)）])\s")
_BLANK_LINE_RE = re.compile(r"\n[ \t\r\f\v]*\n")
_WORD_BEFORE_RE = re.compile(r"([\w.]+)$")


def _is_boundary(block: str, m: re.Match[str]) -> bool:
    mark = m.group()
    after = block[m.end() : m.end() + 2]
    if any(ch in _CJK_END for ch in mark):
        return True
    if after and not after[0].isspace():
        # `3.5`, `U.S.A`, `example.com`: a sentence end is followed by a space (or CJK).
        return "\u4e00" <= after[0] <= "\u9fff"
    if "." not in mark or mark.startswith("...") or "!" in mark or "?" in mark:
        return not after.strip()[:1].islower()
    next_char = after.strip()[:1]
    if next_char.islower():
        return False  # `e.g. the`, `approx. ten`
    word = _WORD_BEFORE_RE.search(block[: m.start()])
    if word:
        w = word.group(1).lower()
        if w in _ABBREVIATIONS:
            return False
        if len(w) == 1 and w.isalpha() and block[m.start() - 1].isupper():
            return False  # an initial: `J. R. R. Tolkien`
    return True


def _split_block(block: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _END_RE.finditer(block):
        if _is_boundary(block, m):
            out.append(block[start : m.end()])
            start = m.end()
    out.append(block[start:])
    return out


def _lines_to_blocks(paragraph: str, lang: str) -> list[str]:
    """Join hard-wrapped English lines; keep list items, headings and Chinese lines apart."""
    lines = paragraph.split("\n")
    blocks: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if not blocks:
            blocks.append(stripped)
            continue
        prev = blocks[-1]
        new_block = (
            lang == "zh"
            or _BULLET_RE.match(line) is not None
            or prev[-1] in _CJK_END + ".!?:："
            # A short line without final punctuation is a heading or a list entry, not a
            # wrapped line of prose (those run to ~60-80 characters).
            or (len(prev) < 40 and prev[-1].isalnum())
        )
        if new_block:
            blocks.append(stripped)
        else:
            blocks[-1] = f"{prev} {stripped}"
    return blocks


def split_sentences(text: str, lang: str | None = None) -> list[str]:
    """Split ``text`` into stripped, non-empty sentences.

    Boundaries: 。！？； always; ``. ! ?`` when followed by whitespace and not by a lower-case
    word, except after known abbreviations (``e.g.``, ``Dr.``) and initials; decimals
    (``3.5``) never split. Blank lines and list bullets always start a new sentence; a single
    newline does in Chinese and after a heading-like line, and is joined as wrapped prose
    otherwise. ``lang`` (``"en"``/``"zh"``) is detected when not given.
    """
    if not text or not text.strip():
        return []
    lang = lang or detect_language(text)
    sentences: list[str] = []
    for paragraph in _BLANK_LINE_RE.split(text.replace("\r\n", "\n")):
        for block in _lines_to_blocks(paragraph, lang):
            sentences.extend(s.strip() for s in _split_block(block))
    return [s for s in sentences if s]
