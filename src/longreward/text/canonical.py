"""The canonical layout of an answer: what the judge sees.

A real judge's scores move with layout alone: on the bundled harbour report, extra blank lines,
indentation and double spaces took a 1.5B judge's reward for the same answer from 8.29 to 7.75
(issue 21). A policy optimised against the reward would learn whichever layout its judge likes.
So the scorer never shows the judge the layout the answer was written in, only this canonical
form of it, and every layout-only variant of an answer is the same request: the same cache
key, the same reward, no new judge call. (The paper sends the answer as written; this is our
departure, on by default: ``ScoreOptions.canonical_layout``.)

The rules, applied outside fenced code blocks:

1. Line breaks: CRLF, CR and the other Unicode line separators (U+2028, U+2029, NEL, VT, FF)
   are LF.
2. Unicode NFC, so a precomposed letter and the same letter with a combining mark are one.
3. Every Unicode space (tab, NBSP U+00A0, U+3000 ideographic space, U+2000–U+200A,
   U+202F, U+205F, U+1680) is a plain space; invisible zero-width characters that only
   separate (U+200B zero-width space, U+2060 word joiner, U+FEFF byte-order mark, U+180E)
   are removed.
4. Runs of spaces are one space; indentation and trailing spaces are stripped.
5. List markers at the start of a line (``-``, ``*``, ``+``, ``•`` and other bullets; ``1.``,
   ``1)``, ``(1)``, ``1、``, ``一、``) are removed: the item keeps its own line, and whether an
   answer is dressed as a list is layout, which the judge must not reward.
6. Runs of blank lines are one blank line; blank lines at the start and end are dropped.

Fenced code blocks (a line opening with three or more backticks or tildes, up to a line
closing it with the same character, at least as many) are left as they are, but for their line
breaks and the fence lines' indentation: whitespace can be meaning there. A fence that is never
closed is not a code block (else one stray fence at the top would exempt the whole answer).

A well-formed answer (paragraphs separated by one blank line, no list markers, no stray
spaces) is its own canonical form, so scoring it costs and scores exactly what it did before.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["canonical_answer", "fenced_code_lines"]

#: invisible characters with no content: dropped
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u180e"), None)
_SPACES = re.compile(r"\s+")  # after ``splitlines`` no line break is left: every \s is a space
_FENCE = re.compile(r"(`{3,}|~{3,})")
#: bullets and "1." / "1)" need a space after them ("-5", "3.5" are not markers); Chinese
#: markers ("1、", "（1）", "一、") are written without one
_LIST_MARKER = re.compile(r"^(?:(?:[-*+•◦‣▪●·–]|\d{1,3}[.)])\s|"
                          r"(?:\d{1,3}[．、]|[（(]\d{1,3}[)）]|[一二三四五六七八九十]{1,3}、)\s?)")


def fenced_code_lines(lines: list[str]) -> set[int]:
    """Indexes of the lines inside closed fenced code blocks (the fence lines excluded): the
    lines the canonical layout leaves as they are."""
    inside: set[int] = set()
    i = 0
    while i < len(lines):
        opener = lines[i].lstrip()
        m = _FENCE.match(opener)
        # (CommonMark: a backtick fence's info string holds no backtick, so "```x```" is
        # inline code, not an opening fence)
        if m is None or (m.group(1)[0] == "`" and "`" in opener[m.end():]):
            i += 1
            continue
        mark = m.group(1)
        close = next((j for j in range(i + 1, len(lines))
                      if (s := lines[j].strip()).startswith(mark[0] * len(mark))
                      and not s.strip(mark[0])), None)
        if close is None:
            i += 1  # never closed: not a code block
            continue
        inside.update(range(i + 1, close))
        i = close + 1
    return inside


def _canonical_line(line: str) -> str:
    line = unicodedata.normalize("NFC", line).translate(_INVISIBLE)
    line = _SPACES.sub(" ", line).strip()
    while (m := _LIST_MARKER.match(line + " ")) is not None:  # "- 1. x" has two
        line = line[m.end():].lstrip()
    return line


def canonical_answer(text: str) -> str:
    """``text`` in the canonical layout described in this module's docstring. Idempotent:
    ``canonical_answer(canonical_answer(t)) == canonical_answer(t)``."""
    lines = text.splitlines()
    code = fenced_code_lines(lines)
    out: list[str] = []
    blank_before = True  # at the start, a blank line is dropped
    for i, line in enumerate(lines):
        if i in code:
            out.append(line)
            blank_before = False
            continue
        line = _canonical_line(line)
        if line:
            out.append(line)
        elif not blank_before:
            out.append("")
        blank_before = not line
    while out and not out[-1]:  # (a code line is never last: its closing fence follows)
        out.pop()
    return "\n".join(out)
