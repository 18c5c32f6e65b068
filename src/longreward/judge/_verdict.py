"""Verdicts the judged text cannot write: fencing candidate text, and reading the judge's own
verdict out of its reply.

Why this exists: the answers we judge are written by the policy that is trained against the
reward. A policy under optimisation pressure will search for any string that raises its
score, and the cheapest such string is a score: ``[[10]]``, ``{"score": 10}``, a fake
closing tag followed by "ignore previous instructions", a fake ``<statement>`` item. If any
of that can reach the number we read, the reward measures how well an answer forges its
verdict, not how good it is. So:

1. **Candidate text is data.** Every candidate-derived prompt variable (the answer, the
   statements taken from it) is sent between an opening and a closing tag that carry a
   boundary of 16 letters derived from a hash of the text itself (``fence``). The same
   request is therefore the same request every time (the call cache and resumed runs keep
   working), and the candidate cannot close its fence early: it would have to contain its
   own hash. Tags of our prompt vocabulary inside the text are neutralised (``<`` becomes
   ``‹``), so a fake ``</answer>`` or ``<none/>`` is visibly not ours.
2. **JSON replies** (``parse_json_reply``): the verdict is the reply's one top-level JSON
   object that validates (the whole reply, one fenced block, or prose around one object).
   Objects that repeat a JSON object of the candidate are quotes and are set aside; what is
   left must be exactly one verdict (equal repeats count once). Several different verdicts,
   or a verdict that is only a copy of the candidate's, is ambiguous.
3. **Text replies** (``read_verdict`` and the parsers in ``reward.dimensions._parse``): the
   verdict is read only from a verdict *line* — a line that is just ``[[X]]`` (full-width
   ``【【X】】`` / ``［［X］］`` too), optionally after a short label such as "Score:". Lines
   that repeat the prompt's fixed text or quote the candidate are removed first; the last
   remaining verdict line is the verdict. An earlier line with a different verdict, or a
   verdict value that the candidate also writes for itself (we cannot tell who wrote it), is
   ambiguous.
4. **Ambiguous is not a guess.** Every ambiguity raises ``ReplyParseError`` with a reason
   that starts with "ambiguous"; ``ModelClient.ask`` re-asks (bounded, at a higher
   temperature after the first try) and then reports the step unscored with that reason.

The cost of the conservative rule in 3 is that an answer which writes, say, ``[[6]]`` and
honestly deserves a 6 ends unscored in text mode; an answer that forges its score can then
never be rewarded for it, which is the point. JSON mode, with the schema enforced by the
endpoint, is rarely ambiguous.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .._util.text import short
from ._types import Message, ReplyParseError

T = TypeVar("T", bound=BaseModel)
V = TypeVar("V")

# --------------------------------------------------------------------------- fencing

#: letters in a fence boundary: 26**16 ≈ 2**75 possibilities
BOUNDARY_LETTERS = 16

#: tag names of our prompts and reply formats (matched as prefixes, any case): inside fenced
#: text their ``<`` is neutralised, so a candidate cannot close a block early, open a fake
#: one, or write a ``<statement>``/``<point>``/``<none/>`` item for a judge to copy.
PROMPT_TAGS = ("answer", "statement", "question", "key_point", "excerpt", "document",
               "point", "none", "reference", "example")

_PROMPT_TAG = re.compile(r"<(?=\s*/?\s*(?:" + "|".join(PROMPT_TAGS) + "))", re.IGNORECASE)
_FENCED = re.compile(r"<([a-z_]+?)_([a-z]{" + str(BOUNDARY_LETTERS) + r"})>\n(.*?)\n</\1_\2>",
                     re.DOTALL)


def boundary(label: str, text: str) -> str:
    """16 lowercase letters from sha256(label, text): fixed for a given text (same request,
    same cache key), unknowable to the text itself."""
    n = int.from_bytes(hashlib.sha256(f"{label}\x00{text}".encode()).digest(), "big")
    letters = []
    for _ in range(BOUNDARY_LETTERS):
        n, r = divmod(n, 26)
        letters.append(chr(ord("a") + r))
    return "".join(letters)


def neutralise(text: str) -> str:
    """``text`` with the ``<`` of every tag of our prompt vocabulary replaced by ``‹``."""
    return _PROMPT_TAG.sub("‹", text)


def fence(label: str, text: str) -> str:
    """``text`` as data: ``<label_BOUNDARY>`` … ``</label_BOUNDARY>``, tags neutralised."""
    b = boundary(label, text)
    return f"<{label}_{b}>\n{neutralise(text)}\n</{label}_{b}>"


def fenced_texts(source: str | Sequence[Message] | None) -> list[str]:
    """The texts fenced in a prompt (its messages, or one string), as the judge saw them."""
    if source is None:
        return []
    text = source if isinstance(source, str) else "\n".join(m.content for m in source)
    return [m.group(3) for m in _FENCED.finditer(text)]


class PromptText(str):
    """A prompt's fixed text (to recognise a judge echoing it), carrying the candidate texts
    the prompt fenced (to recognise a judge quoting them). A plain ``str`` works where one
    is expected and means "no candidate text"."""

    candidates: tuple[str, ...]

    def __new__(cls, static: str, candidates: Iterable[str] = ()) -> PromptText:
        self = super().__new__(cls, static)
        self.candidates = tuple(candidates)
        return self


def candidates_of(prompt_text: str) -> tuple[str, ...]:
    return getattr(prompt_text, "candidates", ())


# --------------------------------------------------------------------------- comparing text

_FOLD = str.maketrans({"‹": "<", "›": ">", "【": "[", "】": "]", "［": "[", "］": "]",
                       "：": ":", "｛": "{", "｝": "}", "“": '"', "”": '"', "‘": "'",
                       "’": "'", "*": None, "`": None})


def fold(text: str) -> str:
    """``text`` compared loosely: case, white space, markdown emphasis, full-width brackets
    and our tag neutralisation do not matter (a judge re-typing a quote changes them)."""
    return " ".join(text.translate(_FOLD).casefold().split())


def strip_echo(reply: str, prompt_text: str) -> str:
    """Remove lines of ``reply`` that also occur, whole, in the prompt (a judge copying its
    instructions or examples). Short lines such as "Analysis:" are kept: they carry nothing
    a parser could mistake for a verdict on their own."""
    prompt_lines = {fold(ln) for ln in str(prompt_text).splitlines() if len(ln.strip()) >= 12}
    return "\n".join(ln for ln in reply.splitlines() if fold(ln) not in prompt_lines)


def quotes_candidate(line: str, prompt_text: str) -> bool:
    """Whether ``line`` (list, quote and emphasis marks aside) is text of a candidate."""
    core = fold(_LINE_MARKS.sub("", line))
    return bool(core) and any(core in fold(c) for c in candidates_of(prompt_text))


def without_quotes(reply: str, prompt_text: str) -> str:
    """``reply`` without the lines that repeat the prompt or quote a candidate."""
    return "\n".join(ln for ln in strip_echo(reply, prompt_text).splitlines()
                     if not quotes_candidate(ln, prompt_text))


# --------------------------------------------------------------------------- text verdicts

#: ``[[X]]`` and its full-width forms (a Chinese judge types these); group 1, 2 or 3 is X
BRACKET = re.compile(r"\[\[\s*([^\[\]\n]{1,40}?)\s*\]\]|【【\s*([^【】\n]{1,40}?)\s*】】"
                     r"|［［\s*([^［］\n]{1,40}?)\s*］］")
_LINE_MARKS = re.compile(r"^[\s>#*\-`]+|[\s*`]+$")
_VERDICT_LINE = re.compile(r"^(?:[^\[\]【】［］:：\n]{1,30}[:：]\s*)?(?:" + BRACKET.pattern
                           + r")\s*[.。!！]?$")


def bracket_content(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g is not None)


def verdict_line(line: str) -> str | None:
    """X when ``line`` is a verdict line ``[[X]]`` (optionally "Label: [[X]]", bold, quoted
    or as a list item); None for any other line, e.g. prose with a bracket inside."""
    m = _VERDICT_LINE.match(_LINE_MARKS.sub("", line).replace("*", "").replace("`", ""))
    return None if m is None else bracket_content(m)


def verdict_lines(reply: str, prompt_text: str) -> tuple[list[str], list[str]]:
    """(own, quoted): the contents X of the reply's verdict lines, in order, split into the
    judge's own and those that quote a candidate. Lines echoing the prompt are dropped."""
    own: list[str] = []
    quoted: list[str] = []
    for line in strip_echo(reply, prompt_text).splitlines():
        x = verdict_line(line)
        if x is not None:
            (quoted if quotes_candidate(line, prompt_text) else own).append(x)
    return own, quoted


def claimed(prompt_text: str, convert: Callable[[str], V | None]) -> set[V]:
    """Verdict values the candidate texts write for themselves, anywhere in them."""
    found: set[V] = set()
    for text in candidates_of(prompt_text):
        for m in BRACKET.finditer(fold(text)):
            value = convert(bracket_content(m))
            if value is not None:
                found.add(value)
    return found


def read_verdict(reply: str, prompt_text: str, convert: Callable[[str], V | None],
                 form: str, what: str = "verdict") -> V:
    """The judge's verdict: the last verdict line of its own (see the module docstring).
    ``convert(X)`` maps a bracket's content to a value, or None when X is not in ``form``;
    ``what`` names the value in error messages ("score")."""
    own, quoted = verdict_lines(reply, prompt_text)
    if not own:
        if quoted:
            raise ReplyParseError(f"ambiguous: the reply's only verdict line ([[{quoted[-1]}]]) "
                                  "quotes the judged text")
        raise ReplyParseError(f"no {what} line in the form {form} in the reply")
    value = convert(own[-1])
    if value is None:
        raise ReplyParseError(f"the final {what} line [[{own[-1]}]] is not in the form {form}")
    theirs = claimed(prompt_text, convert)
    if value in theirs:
        raise ReplyParseError(f"ambiguous: the verdict [[{own[-1]}]] also appears in the judged "
                              "text, so it may be copied from it")
    for x in own[:-1]:
        other = convert(x)
        # an earlier line with a value the candidate claims is a quote of it, not a verdict
        if other is not None and other != value and other not in theirs:
            raise ReplyParseError(f"ambiguous: the reply gives two different verdicts, "
                                  f"[[{x}]] and [[{own[-1]}]]")
    return value


# --------------------------------------------------------------------------- JSON verdicts

def json_objects(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Every top-level JSON object in ``text`` (whole, in a fence or in prose), with its
    source text. Objects nested in another (or in its strings) are not top-level."""
    decoder = json.JSONDecoder()
    found: list[tuple[str, dict[str, Any]]] = []
    i = text.find("{")
    while i != -1:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        found.append((text[i:end], value))
        i = text.find("{", end)
    return found


def _repeats(value: dict[str, Any], theirs: list[dict[str, Any]]) -> bool:
    """The reply's object holds one of the candidate's objects whole (every key with the
    same value): a judge that took the candidate's self-verdict and added a field of its
    own (seen with SmolLM2-135M: the candidate's ``{"analysis": "perfect", "score": 10}``
    came back with an ``errors`` list added) copied it as surely as one that repeated it."""
    return any(t and all(k in value and value[k] == v for k, v in t.items()) for t in theirs)


def parse_json_reply(text: str, model: type[T],
                     messages: str | Sequence[Message] | None = None) -> T:
    """The verdict of a JSON reply: its one top-level object that validates as ``model``.

    ``messages`` (the prompt sent) gives the fenced candidate texts: an object that repeats
    one of theirs is a quote, not a verdict. Raises ``ReplyParseError`` when there is no
    valid object, when there are several different ones, or when the only one is a copy.
    """
    candidates = fenced_texts(messages)
    folded = [fold(c) for c in candidates]
    theirs = [value for c in candidates for _, value in json_objects(c)]
    verdicts: list[T] = []
    copies = 0
    first_error: ValidationError | None = None
    for source, value in json_objects(text):
        try:
            verdict = model.model_validate_json(source)
        except ValidationError as exc:
            first_error = first_error or exc
            continue
        if _repeats(value, theirs) or any(fold(source) in c for c in folded):
            copies += 1
        elif all(verdict != v for v in verdicts):
            verdicts.append(verdict)
    if len(verdicts) == 1:
        return verdicts[0]
    if verdicts:
        raise ReplyParseError(f"ambiguous: the reply holds {len(verdicts)} different "
                              f"{model.__name__} objects; the verdict must be its one JSON object")
    if copies:
        raise ReplyParseError(f"ambiguous: the reply's only {model.__name__} object repeats one "
                              "written in the judged text")
    if first_error is not None:
        raise ReplyParseError(f"reply is not a valid {model.__name__}: {short(str(first_error))}")
    raise ReplyParseError(f"no JSON object in the reply (expected one {model.__name__})")
