"""Is a statement grounded in the answer it was split from? (issue 21, item 1)

The judge's statement split is a model too, and a persuadable one: a real 1.5B judge turned
the question into a statement for an answer that was just ``:``, and its grading step found
that statement fully supported. Every statement the split returns is therefore checked
against the answer's own text before it is graded:

1. **numbers** (digits, English number words, Chinese numerals, with their scale words:
   "twelve million" = "12,000,000" = "一千二百万" = "1200万"; a percent sign is dropped, so
   "12%" = "12 per cent" = "百分之十二") must each appear in the answer or in the question,
   compared as values after normalising both sides. Years and dates are numbers;
2. **names** (English words written with a capital, function words aside) must each appear
   in the answer or the question. The question may hold the subject ("Northwind", "the 2019
   drought"), which a self-contained statement repeats;
3. at least one **content term** of the statement must come from the answer and not only
   from the question: a content word (English words of 3+ letters that are no function word,
   compared on a short stem) or a Chinese character bigram, or a number. A terse answer
   ("12%") grounds "Revenue grew by 12% in 2022" through its number; a statement made of
   the question's words alone says nothing the answer said.

Chinese has no spaces, so its content terms are the character bigrams of each run of CJK
characters (a one-character run is its own term). The check is lexical on purpose: it costs
no call, it is the same for every judge, and what it rejects (a number, a name or a topic the
answer never wrote) is what an invented statement has to bring.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Grounding", "content_terms", "ground_statement", "names", "numbers"]

_UNIT_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
               "fourteen fifteen sixteen seventeen eighteen nineteen")
_TEN_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety"
_EN_UNITS = {w: i for i, w in enumerate(_UNIT_WORDS.split())}
_EN_TENS = {w: 10 * (i + 2) for i, w in enumerate(_TEN_WORDS.split())}
_EN_SCALES = {"hundred": 100, "thousand": 1e3, "million": 1e6, "billion": 1e9,
              "trillion": 1e12}
_SCALE_SUFFIX = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12,
                 "bn": 1e9, "mn": 1e6, "k": 1e3, "万": 1e4, "亿": 1e8, "千": 1e3, "百万": 1e6,
                 "千万": 1e7}
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
_ZH_SMALL = {"十": 10, "百": 100, "千": 1000}
_ZH_BIG = {"万": 1e4, "亿": 1e8}

_DIGITS = re.compile(
    r"(?<![A-Za-z0-9.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:\s*(thousand|million|billion|trillion|bn|mn)\b|\s?(k)\b|(千万|百万|万|亿|千))?",
    re.IGNORECASE)
_EN_WORD_NUMBER = re.compile(
    r"\b(?:(?:" + "|".join([*_EN_UNITS, *_EN_TENS, *_EN_SCALES]) + r")(?:[\s-]+(?:and\s+)?|\b))+",
    re.IGNORECASE)
_ZH_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千万亿]+")

_FUNCTION_WORDS = """
a about above after again against all also although am an and any are around as at be
because been before being below between both but by can could did do does doing done down
during each either else even ever every few for from further had has have having he her here
hers herself him himself his how however i if in into is it its itself just least less let
like many may me might more most much must my myself neither no nor not now of off often on
once only or other others our ours ourselves out over own per rather same she should since so
some such than that the their theirs them themselves then there therefore these they this
those though through thus to too under until up upon us very was we were what when where
whether which while who whom whose why will with within without would yet you your yours
yourself yourselves according answer document report text question says said states stated
notes noted mentions mentioned also overall first second third last next new one
"""
#: English function words: never names, never content terms
STOPWORDS = frozenset(_FUNCTION_WORDS.split())

_EN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _en_words_value(words: list[str]) -> float | None:
    total, current, seen = 0.0, 0.0, False
    for w in words:
        w = w.lower()
        if w in _EN_UNITS:
            current += _EN_UNITS[w]
        elif w in _EN_TENS:
            current += _EN_TENS[w]
        elif w == "hundred":
            current = (current or 1) * 100
        elif w in _EN_SCALES:
            total += (current or 1) * _EN_SCALES[w]
            current = 0
        else:
            continue
        seen = True
    return total + current if seen else None


def _zh_value(s: str) -> float:
    total, section, digit = 0.0, 0.0, None
    for ch in s:
        if ch in _ZH_DIGITS:  # digits in a row ("一九五八") read as a positional number
            digit = (0 if digit is None else digit * 10) + _ZH_DIGITS[ch]
        elif ch in _ZH_SMALL:
            section += (1 if digit is None else digit) * _ZH_SMALL[ch]
            digit = None
        else:  # 万, 亿: scale everything before
            total = (total + section + (digit or 0)) * _ZH_BIG[ch]
            section, digit = 0.0, None
    return total + section + (digit or 0)


def numbers(text: str) -> set[float]:
    """The numbers ``text`` states, as values (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    found: set[float] = set()
    spans: list[tuple[int, int]] = []
    for m in _DIGITS.finditer(text):
        value = float(m.group(1).replace(",", ""))
        scale = (m.group(2) or m.group(3) or m.group(4) or "").lower()
        found.add(_round(value * _SCALE_SUFFIX.get(scale, 1)))
        spans.append(m.span())
    for m in _EN_WORD_NUMBER.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue  # the scale word of a digit number ("41 million"), read above
        words = re.split(r"[\s-]+", m.group(0).strip())
        if [w.lower() for w in words if w.lower() != "and"] == ["one"]:
            continue  # "one of the reasons": a pronoun far more often than a figure
        value = _en_words_value(words)
        if value is not None:
            found.add(_round(value))
    for m in _ZH_NUMERAL.finditer(text):
        s = m.group(0)
        if any(a <= m.start() < b for a, b in spans):
            continue  # as above ("4100万")
        if s in ("一", "两", "万", "亿", "千", "百"):
            continue  # "一场", "两国", "千万要": a word far more often than a figure
        found.add(_round(_zh_value(s)))
    return found


def _key(word: str) -> str:
    w = word.casefold().replace("’", "'")
    return (w[:-2] if w.endswith("'s") else w).strip("'-")


def names(text: str) -> set[str]:
    """English words written with a capital that are no function word and do not open a
    sentence (where any word is capitalised), case-folded."""
    out: set[str] = set()
    for sentence in re.split(r"(?<=[.!?:;。！？；：])\s+|\n", text):
        for k, m in enumerate(_EN_WORD.finditer(sentence)):
            w = m.group(0)
            if k > 0 and w[0].isupper() and _key(w) not in STOPWORDS:
                out.add(_key(w))
    return out


def _stem(word: str) -> str:
    w = _key(word)
    if len(w) > 4 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    return w[:6]


def content_terms(text: str) -> set[str]:
    """Content words (stemmed), CJK character bigrams and numbers (``#value``) of ``text``."""
    text = unicodedata.normalize("NFKC", text)
    terms = {_stem(w) for w in _EN_WORD.findall(text)
             if len(w) >= 3 and w.casefold() not in STOPWORDS}
    for run in _CJK_RUN.findall(text):
        terms.update({run} if len(run) == 1 else {run[k:k + 2] for k in range(len(run) - 1)})
    terms.update(f"#{v:g}" for v in numbers(text))
    return terms


@dataclass(frozen=True)
class Grounding:
    grounded: bool
    #: why not (empty when grounded)
    why: str = ""


def ground_statement(statement: str, answer: str, question: str) -> Grounding:
    """Whether ``statement`` is grounded in ``answer`` (the module docstring's three rules)."""
    allowed = numbers(answer) | numbers(question)
    missing = sorted(v for v in numbers(statement) if v not in allowed)
    if missing:
        return Grounding(False, f"its number {missing[0]:g} is in neither the answer nor "
                                "the question")
    known = {_key(w) for w in _EN_WORD.findall(answer + " " + question)}
    absent = sorted(names(statement) - known)
    if absent:
        return Grounding(False, f"its name {absent[0]!r} is in neither the answer nor the "
                                "question")
    own = (content_terms(statement) & content_terms(answer)) - content_terms(question)
    if not own:
        return Grounding(False, "none of its words comes from the answer (only from the "
                                "question, or from neither)")
    return Grounding(True)
