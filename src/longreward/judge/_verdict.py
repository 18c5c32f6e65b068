"""Verdicts the judged text cannot write: fencing candidate text, labelling each request with a
nonce, and locating the judge's own verdict in its reply. This module is the one place that
knows how a verdict is located; the parsers in ``reward.dimensions._parse`` only map what it
finds to values.

Why this exists: the answers we judge are written by the policy that is trained against the
reward. A policy under optimisation pressure will search for any string that raises its
score, and the cheapest such string is a score: ``[[10]]``, ``{"score": 10}``, a fake
closing tag followed by "ignore previous instructions", a fake ``<statement>`` item, or, once
those are caught, the *low* verdict it expects to get (``[[2]]``), so that the judge's honest
verdict can no longer be told from the answer's copy of it. So:

1. **Candidate text is data.** Every candidate-derived prompt variable (the answer, the
   statements taken from it) is sent between an opening and a closing tag that carry a
   boundary of 16 letters derived from a hash of the text itself (``fence``). The same
   request is therefore the same request every time (the call cache and resumed runs keep
   working), and the candidate cannot close its fence early: it would have to contain its
   own hash. Tags of our prompt vocabulary inside the text are neutralised (``<`` becomes
   ``‹``), so a fake ``</answer>`` or ``<none/>`` is visibly not ours.
2. **A nonce labels the judge's verdict.** Each request that carries candidate text ends,
   after the candidate, with a *verdict code* (``make_nonce``): 8 characters of an HMAC of the
   request's content under a secret kept in the run store (``RunStore.verdict_secret``;
   without a store, a random secret of this process). The same request gets the same code
   (a rerun hits the call cache), and the answer cannot contain its own code: the code
   depends on the answer's text and on a secret the policy never sees. The judge writes the
   code into its verdict: JSON replies hold it in a required field (``NONCE_FIELD``, a schema
   ``const``, so grammar-constrained endpoints cannot get it wrong); text replies put it on the
   verdict line (``CODE [[7]]``). A verdict carrying the right code is the judge's own, even
   when the reply also quotes the answer and the answer wrote the same value: this is the
   "nonce" path. Several verdicts with the code that disagree are the judge's own
   inconsistency (re-asked; the judge's fault, not the answer's).
3. **Fallback, for judges that drop the code** (the rules before nonces; the "fallback"
   path):
   - *JSON replies* (``locate_json``): the verdict is the reply's one top-level JSON object
     that validates (the whole reply, one fenced block, or prose around one object). Objects
     that repeat a JSON object of the candidate are quotes and are set aside; what is left must
     be exactly one verdict (equal repeats count once). Several different verdicts, or a
     verdict that is only a copy of the candidate's, is ambiguous.
   - *Text replies* (``locate_verdict``): the verdict is read only from a verdict *line* — a
     line that is just ``[[X]]`` (full-width ``【【X】】`` / ``［［X］］`` too), optionally after
     a short label such as "Score:". Lines that repeat the prompt's fixed text (whole, or a
     part of one of its lines) or quote the candidate are removed first; the last remaining
     verdict line is the verdict. An earlier line with a different verdict, or a verdict value
     that the candidate also writes for itself (we cannot tell who wrote it), is ambiguous.
4. **Ambiguous is not a guess, and it has a cause.** Every ambiguity raises
   ``ReplyParseError`` with a reason that starts with "ambiguous" and a ``cause``: "answer"
   when the judged text is what made the verdict unreadable (its own verdict-shaped text was
   copied or could be), "judge" otherwise. ``ModelClient.ask`` re-asks (bounded, at a higher
   temperature after the first try) and then reports the step without a value and with that
   cause: an answer-caused failure scores the dimension's minimum (a policy can never gain by
   making its verdict unreadable), a judge-caused one leaves the reward null (mask 0).

The cost of the conservative fallback is that an answer which writes, say, ``[[6]]`` (a
citation marker) and honestly deserves a 6 scores 0 when the judge drops the code; with the
code kept it scores 6. JSON mode with a schema-enforcing endpoint always keeps it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from .._util.text import short
from ._types import Cause, JsonSchema, Message, ReplyParseError

T = TypeVar("T", bound=BaseModel)
V = TypeVar("V")

#: how a verdict was found: labelled with the request's nonce, or by the fallback rules
Path = Literal["nonce", "fallback"]

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
    the prompt fenced (to recognise a judge quoting them) and the request's nonce (to
    recognise the judge's own verdict). A plain ``str`` works where one is expected and
    means "no candidate text, no nonce"."""

    candidates: tuple[str, ...]
    nonce: str | None

    def __new__(cls, static: str, candidates: Iterable[str] = (),
                nonce: str | None = None) -> PromptText:
        self = super().__new__(cls, static)
        self.candidates = tuple(candidates)
        self.nonce = nonce
        return self


def candidates_of(prompt_text: str) -> tuple[str, ...]:
    return getattr(prompt_text, "candidates", ())


def nonce_of(prompt_text: str) -> str | None:
    return getattr(prompt_text, "nonce", None)


# --------------------------------------------------------------------------- nonces

#: the JSON field that holds the nonce (the prompts call it the "verdict code")
NONCE_FIELD = "verdict_code"
#: characters of a nonce: upper-case letters and digits without look-alikes (0/O, 1/I/L), so
#: a judge re-typing it cannot confuse two of them; 31**8 ≈ 2**40 values
NONCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
NONCE_LENGTH = 8

#: the secret of a process whose client has no run store: random, never written anywhere
_PROCESS_SECRET = secrets.token_bytes(32)


def verdict_secret(cache: object) -> bytes:
    """The secret nonces are derived from: the run store's (``RunStore.verdict_secret``: made
    once per store and kept in it, so a rerun derives the same nonces and hits the call
    cache), else one random secret per process. Never logged, never in an output row."""
    getter = getattr(cache, "verdict_secret", None)
    return getter() if callable(getter) else _PROCESS_SECRET


def make_nonce(secret: bytes, content: str) -> str:
    """The nonce of a request: HMAC-SHA256 of ``content`` (everything the request says, the
    candidate text included) under ``secret``, written in ``NONCE_ALPHABET``."""
    n = int.from_bytes(hmac.new(secret, content.encode("utf-8"), hashlib.sha256).digest(), "big")
    out = []
    for _ in range(NONCE_LENGTH):
        n, r = divmod(n, len(NONCE_ALPHABET))
        out.append(NONCE_ALPHABET[r])
    return "".join(out)


def schema_with_nonce(schema: JsonSchema, nonce: str) -> JsonSchema:
    """``schema`` with a first, required ``NONCE_FIELD`` whose value must be ``nonce`` (a
    ``const``: an endpoint that enforces the schema writes it for the judge)."""
    props = {NONCE_FIELD: {"const": nonce, "type": "string",
                           "description": "the verdict code of this request, copied exactly"},
             **{k: v for k, v in schema.get("properties", {}).items() if k != NONCE_FIELD}}
    required = [NONCE_FIELD, *[r for r in schema.get("required", []) if r != NONCE_FIELD]]
    return {**schema, "properties": props, "required": required}


def _has_nonce(text: str, nonce: str) -> bool:
    return nonce.casefold() in text.casefold()


# --------------------------------------------------------------------------- comparing text

_FOLD = str.maketrans({"‹": "<", "›": ">", "【": "[", "】": "]", "［": "[", "］": "]",
                       "：": ":", "｛": "{", "｝": "}", "“": '"', "”": '"', "‘": "'",
                       "’": "'", "*": None, "`": None})

#: a reply line of at least this many (folded) characters found inside the prompt's fixed
#: text is an echo of it, even when it is only part of one of its lines
_ECHO_MIN_CHARS = 20


def fold(text: str) -> str:
    """``text`` compared loosely: case, white space, markdown emphasis, full-width brackets
    and our tag neutralisation do not matter (a judge re-typing a quote changes them)."""
    return " ".join(text.translate(_FOLD).casefold().split())


@lru_cache(maxsize=64)
def _folded_prompt(static: str) -> tuple[frozenset[str], str]:
    lines = frozenset(fold(ln) for ln in static.splitlines() if len(ln.strip()) >= 12)
    return lines, "\n".join(fold(ln) for ln in static.splitlines())


def echoes_prompt(line: str, prompt_text: str) -> bool:
    """Whether ``line`` repeats the prompt's fixed text: one of its lines whole, or a part of
    one of 20 characters or more (a judge quoting half an instruction line)."""
    lines, whole = _folded_prompt(str(prompt_text))
    core = fold(_LINE_MARKS.sub("", line))
    return fold(line) in lines or (len(core) >= _ECHO_MIN_CHARS and core in whole)


def strip_echo(reply: str, prompt_text: str) -> str:
    """Remove lines of ``reply`` that repeat the prompt (a judge copying its instructions or
    examples, whole lines or parts of them). Short lines such as "Analysis:" are kept: they
    carry nothing a parser could mistake for a verdict on their own."""
    return "\n".join(ln for ln in reply.splitlines() if not echoes_prompt(ln, prompt_text))


def quotes_candidate(line: str, prompt_text: str) -> bool:
    """Whether ``line`` (list, quote and emphasis marks aside) is text of a candidate."""
    core = fold(_LINE_MARKS.sub("", line))
    return bool(core) and any(core in fold(c) for c in candidates_of(prompt_text))


def parrots(reply: str, candidates: Sequence[str]) -> bool:
    """Whether every line of ``reply`` repeats the judged text: a judge that answered with
    the answer's own words (a forged verdict line, an instruction it obeyed) wrote nothing of
    its own, and a reply that fails to parse for that reason is the answer's doing."""
    lines = [fold(_LINE_MARKS.sub("", ln)) for ln in reply.splitlines()]
    lines = [ln for ln in lines if ln]
    folded = [fold(c) for c in candidates]
    return bool(lines) and all(any(ln in c for c in folded) for ln in lines)


def without_quotes(reply: str, prompt_text: str) -> str:
    """``reply`` without the lines that repeat the prompt or quote a candidate."""
    return "\n".join(ln for ln in strip_echo(reply, prompt_text).splitlines()
                     if not quotes_candidate(ln, prompt_text))


def _lines(text: str) -> list[tuple[str, int]]:
    """The lines of ``text`` with the offset where each starts."""
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append((line.rstrip("\r\n"), pos))
        pos += len(line)
    return out


# --------------------------------------------------------------------------- text verdicts

#: ``[[X]]`` and its full-width forms (a Chinese judge types these); group 1, 2 or 3 is X
BRACKET = re.compile(r"\[\[\s*([^\[\]\n]{1,40}?)\s*\]\]|【【\s*([^【】\n]{1,40}?)\s*】】"
                     r"|［［\s*([^［］\n]{1,40}?)\s*］］")
_LINE_MARKS = re.compile(r"^[\s>#*\-`]+|[\s*`]+$")
#: a verdict line: ``[[X]]`` alone, after a short label ("Score: [[7]]"), or after one word (a
#: verdict code the judge mistyped: "K7QF2MZ [[7]]")
_VERDICT_LINE = re.compile(r"^(?:[^\[\]【】［］:：\n]{1,30}[:：]\s*|[A-Za-z0-9_-]{1,30}\s+)?(?:"
                           + BRACKET.pattern + r")\s*[.。!！]?$")


@dataclass(frozen=True)
class Located(Generic[V]):
    """A verdict and where it was found: ``path`` "nonce" (it carried the request's nonce)
    or "fallback" (the rules for replies without it); ``span`` is the (start, end) offsets in
    the reply of the verdict's text (the X of a ``[[X]]`` line, or the JSON object), where a
    reader of token probabilities finds the verdict token."""

    value: V
    path: Path
    span: tuple[int, int]


def bracket_content(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g is not None)


def _content_span(match: re.Match[str], offset: int = 0) -> tuple[int, int]:
    group = next(i for i, g in enumerate(match.groups(), start=1) if g is not None)
    return offset + match.start(group), offset + match.end(group)


def verdict_line(line: str) -> str | None:
    """X when ``line`` is a verdict line ``[[X]]`` (optionally "Label: [[X]]", bold, quoted
    or as a list item); None for any other line, e.g. prose with a bracket inside."""
    m = _VERDICT_LINE.match(_LINE_MARKS.sub("", line).replace("*", "").replace("`", ""))
    return None if m is None else bracket_content(m)


def _verdict_lines(reply: str, prompt_text: str
                   ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(own, quoted) verdict lines as (X, line offset), echoes of the prompt dropped."""
    own: list[tuple[str, int]] = []
    quoted: list[tuple[str, int]] = []
    for line, start in _lines(reply):
        if echoes_prompt(line, prompt_text):
            continue
        x = verdict_line(line)
        if x is not None:
            (quoted if quotes_candidate(line, prompt_text) else own).append((x, start))
    return own, quoted


def verdict_lines(reply: str, prompt_text: str) -> tuple[list[str], list[str]]:
    """(own, quoted): the contents X of the reply's verdict lines, in order, split into the
    judge's own and those that quote a candidate. Lines echoing the prompt are dropped."""
    own, quoted = _verdict_lines(reply, prompt_text)
    return [x for x, _ in own], [x for x, _ in quoted]


_NONCE_SEPARATORS = " \t:：,，;；|-–—#()（）"


def nonce_verdicts(reply: str, nonce: str | None) -> list[tuple[str, tuple[int, int]]]:
    """The verdicts the reply labels with ``nonce``: for each line holding the nonce and a
    bracket, the X of the first ``[[X]]`` after the nonce (else of the last one before it, or
    of a bracket holding the nonce itself, ``[[CODE: X]]``), with its span in the reply. A
    line holding the nonce but no bracket (the judge repeating the code) gives nothing."""
    if not nonce:
        return []
    found: list[tuple[str, tuple[int, int]]] = []
    key = nonce.casefold()
    for line, start in _lines(reply):
        at = line.casefold().find(key)
        if at < 0:
            continue
        brackets = list(BRACKET.finditer(line))
        inside = [m for m in brackets if m.start() <= at < m.end()]
        after = [m for m in brackets if m.start() >= at + len(nonce)]
        before = [m for m in brackets if m.end() <= at]
        if inside:
            m = inside[0]
            lo, hi = _content_span(m)
            text = line[lo:hi]
            cut = text.casefold().find(key)
            rest = (text[:cut] + text[cut + len(nonce):]).strip(_NONCE_SEPARATORS)
            at = text.find(rest, cut + len(nonce)) if rest else -1
            at = text.find(rest) if at < 0 else at  # the span is the verdict's, not the code's
            found.append((rest, (start + lo + at, start + lo + at + len(rest))))
        elif after or before:
            m = after[0] if after else before[-1]
            found.append((bracket_content(m), _content_span(m, start)))
    return found


def claimed(prompt_text: str, convert: Callable[[str], V | None]) -> set[V]:
    """Verdict values the candidate texts write for themselves, anywhere in them."""
    found: set[V] = set()
    for text in candidates_of(prompt_text):
        for m in BRACKET.finditer(fold(text)):
            value = convert(bracket_content(m))
            if value is not None:
                found.add(value)
    return found


def locate_verdict(reply: str, prompt_text: str, convert: Callable[[str], V | None],
                   form: str, what: str = "verdict") -> Located[V]:
    """The judge's verdict in a text reply (see the module docstring): the one labelled with
    the request's nonce, else the last verdict line of its own. ``convert(X)`` maps a
    bracket's content to a value, or None when X is not in ``form``; ``what`` names the value
    in error messages ("score")."""
    labelled = nonce_verdicts(reply, nonce_of(prompt_text))
    if labelled:
        values: list[tuple[V, tuple[int, int]]] = []
        for x, span in labelled:
            value = convert(x)
            if value is None:
                raise ReplyParseError(f"the {what} line with the verdict code holds [[{x}]], "
                                      f"which is not in the form {form}")
            values.append((value, span))
        if len({v for v, _ in values}) > 1:
            raise ReplyParseError(f"ambiguous: the reply labels different verdicts with the "
                                  f"verdict code ({', '.join(x for x, _ in labelled)})")
        return Located(values[-1][0], "nonce", values[-1][1])
    own, quoted = _verdict_lines(reply, prompt_text)
    if not own:
        if quoted:
            raise ReplyParseError(f"ambiguous: the reply's only verdict line ([[{quoted[-1][0]}]]) "
                                  "quotes the judged text", cause="answer")
        raise ReplyParseError(f"no {what} line in the form {form} in the reply")
    last, start = own[-1]
    value = convert(last)
    if value is None:
        raise ReplyParseError(f"the final {what} line [[{last}]] is not in the form {form}")
    theirs = claimed(prompt_text, convert)
    if value in theirs:
        raise ReplyParseError(f"ambiguous: the verdict [[{last}]] also appears in the judged "
                              "text, so it may be copied from it", cause="answer")
    for x, _ in own[:-1]:
        other = convert(x)
        # an earlier line with a value the candidate claims is a quote of it, not a verdict
        if other is not None and other != value and other not in theirs:
            raise ReplyParseError(f"ambiguous: the reply gives two different verdicts, "
                                  f"[[{x}]] and [[{last}]]")
    line = reply[start:].split("\n", 1)[0]
    m = list(BRACKET.finditer(line))[-1]
    return Located(value, "fallback", _content_span(m, start))


def read_verdict(reply: str, prompt_text: str, convert: Callable[[str], V | None],
                 form: str, what: str = "verdict") -> V:
    """The value of ``locate_verdict``."""
    return locate_verdict(reply, prompt_text, convert, form, what).value


def text_path(reply: str, nonce: str | None) -> Path:
    """The path a text reply's verdict is read by: "nonce" when a verdict line carries the
    nonce (``locate_verdict`` then reads only those), else "fallback"."""
    return "nonce" if nonce_verdicts(reply, nonce) else "fallback"


# --------------------------------------------------------------------------- JSON verdicts

def json_objects(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Every top-level JSON object in ``text`` (whole, in a fence or in prose), with its
    source text. Objects nested in another (or in its strings) are not top-level."""
    return [(source, value) for source, value, _ in json_objects_at(text)]


def json_objects_at(text: str) -> list[tuple[str, Any, int]]:
    decoder = json.JSONDecoder()
    found: list[tuple[str, Any, int]] = []
    i = text.find("{")
    while i != -1:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        found.append((text[i:end], value, i))
        i = text.find("{", end)
    return found


def _repeats(value: Any, theirs: list[Any]) -> bool:
    """The reply's object holds one of the candidate's objects whole (every key with the
    same value): a judge that took the candidate's self-verdict and added a field of its
    own (seen with SmolLM2-135M: the candidate's ``{"analysis": "perfect", "score": 10}``
    came back with an ``errors`` list added) copied it as surely as one that repeated it."""
    return isinstance(value, dict) and any(
        isinstance(t, dict) and t and all(k in value and value[k] == v for k, v in t.items())
        for t in theirs)


def _carries(value: Any, nonce: str) -> bool:
    return (isinstance(value, dict) and isinstance(value.get(NONCE_FIELD), str)
            and value[NONCE_FIELD].strip().casefold() == nonce.casefold())


def locate_json(text: str, model: type[T], messages: str | Sequence[Message] | None = None,
                nonce: str | None = None) -> Located[T]:
    """The verdict of a JSON reply (see the module docstring): the object carrying ``nonce``
    in ``NONCE_FIELD``, else the reply's one top-level object that validates as ``model``.

    ``messages`` (the prompt sent) gives the fenced candidate texts: without the nonce, an
    object that repeats one of theirs is a quote, not a verdict. Raises ``ReplyParseError``
    when there is no valid object, when there are several different ones, or when the only
    one is a copy."""
    objects = json_objects_at(text)
    if nonce:
        labelled = [(src, start) for src, value, start in objects if _carries(value, nonce)]
        if labelled:
            return _one_verdict(labelled, model, "nonce", "labelled with the verdict code")
    candidates = fenced_texts(messages)
    folded = [fold(c) for c in candidates]
    theirs = [value for c in candidates for _, value, _ in json_objects_at(c)]
    own: list[tuple[str, int]] = []
    copies = 0
    for source, value, start in objects:
        if _repeats(value, theirs) or any(fold(source) in c for c in folded):
            copies += 1
        else:
            own.append((source, start))
    try:
        return _one_verdict(own, model, "fallback", "")
    except _NoVerdict as exc:
        if copies:
            raise ReplyParseError(f"ambiguous: the reply's only {model.__name__} object "
                                  "repeats one written in the judged text",
                                  cause="answer") from None
        if exc.invalid is not None:
            raise ReplyParseError(f"reply is not a valid {model.__name__}: "
                                  f"{short(str(exc.invalid))}") from None
        raise ReplyParseError(f"no JSON object in the reply (expected one "
                              f"{model.__name__})") from None
    except ReplyParseError as exc:
        # several different objects: the answer's doing when it writes objects of its own
        if theirs and exc.cause == "judge":
            raise ReplyParseError(str(exc), cause="answer") from None
        raise


class _NoVerdict(Exception):
    def __init__(self, invalid: ValidationError | None) -> None:
        self.invalid = invalid


def _one_verdict(objects: list[tuple[str, int]], model: type[T], path: Path,
                 which: str) -> Located[T]:
    verdicts: list[tuple[T, tuple[int, int]]] = []
    first_error: ValidationError | None = None
    for source, start in objects:
        try:
            verdict = model.model_validate_json(source)
        except ValidationError as exc:
            first_error = first_error or exc
            continue
        if all(verdict != v for v, _ in verdicts):
            verdicts.append((verdict, (start, start + len(source))))
    if len(verdicts) == 1:
        return Located(verdicts[0][0], path, verdicts[0][1])
    if verdicts:
        raise ReplyParseError(f"ambiguous: the reply holds {len(verdicts)} different "
                              f"{model.__name__} objects{' ' + which if which else ''}; the "
                              "verdict must be its one JSON object")
    if which:  # objects labelled with the code, none valid: the judge's own invalid verdict
        assert first_error is not None
        raise ReplyParseError(f"reply is not a valid {model.__name__}: "
                              f"{short(str(first_error))}")
    raise _NoVerdict(first_error)


def field_span(text: str, span: tuple[int, int], name: str) -> tuple[int, int] | None:
    """Where the value of top-level field ``name`` of the JSON object at ``span`` is written
    (a string's characters without its quotes; the last one when the key repeats, as a
    parser reads it), or None: where a reader of token probabilities finds the verdict."""
    src, found = text[span[0]:span[1]], None
    decoder = json.JSONDecoder()
    try:
        i = _WS.match(src, 1).end()
        while src[i:i + 1] == '"':
            key, i = json.decoder.scanstring(src, i + 1)
            i = _WS.match(src, i).end()
            if src[i:i + 1] != ":":
                return None
            i = _WS.match(src, i + 1).end()
            value, end = decoder.raw_decode(src, i)
            if key == name:
                found = (i + 1, end - 1) if isinstance(value, str) else (i, end)
            i = _WS.match(src, end).end()
            if src[i:i + 1] != ",":
                break
            i = _WS.match(src, i + 1).end()
    except (ValueError, IndexError):
        return None
    return None if found is None else (span[0] + found[0], span[0] + found[1])


_WS = re.compile(r"\s*")


def parse_json_reply(text: str, model: type[T],
                     messages: str | Sequence[Message] | None = None,
                     nonce: str | None = None) -> T:
    """The value of ``locate_json``."""
    return locate_json(text, model, messages, nonce).value


# --------------------------------------------------------------------------- copied replies

#: an answer's span of at least this many (folded) characters (a CJK character counts two)
#: found in the judge's analysis is copied text; a judge quoting a phrase of the answer
#: quotes less than this at a time
_COPY_MIN_CHARS = 24
#: a reply whose analysis is copied from the answer for more than this share is not the
#: judge's own
_COPY_SHARE = 0.5
#: quoted passages (the judge quoting an error it found) are the judge's own analysis
_QUOTED = re.compile(r'"[^"\n]{1,400}"|“[^”\n]{1,400}”|「[^」\n]{1,400}」|『[^』\n]{1,400}』'
                     r"|‘[^’\n]{1,400}’|^\s*>.*$", re.MULTILINE)


def _size(text: str) -> int:
    """Length with each CJK character counted twice (one carries about a word's worth)."""
    return len(text) + sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")


def _copied_chars(text: str, source: str) -> int:
    """Size (``_size``) of the parts of ``text`` that lie in common runs of
    ``_COPY_MIN_CHARS`` or more with ``source`` (both folded)."""
    from difflib import SequenceMatcher

    if _size(text) < _COPY_MIN_CHARS or _size(source) < _COPY_MIN_CHARS:
        return 0
    blocks = SequenceMatcher(None, text, source, autojunk=False).get_matching_blocks()
    runs = (_size(text[b.a:b.a + b.size]) for b in blocks)
    return sum(n for n in runs if n >= _COPY_MIN_CHARS)


@dataclass(frozen=True)
class CopyCheck:
    """What a judge's analysis must not be made of (``copied_reply``): the spans of the judged
    text flagged as addressed to the grader, and its judge-like parts (sentences that speak
    of quality, checking, scores or the grader, flagged or not). Made by the reward layer,
    which knows the detector (``reward.injection.copy_check``)."""

    flagged: tuple[str, ...] = ()
    judge_like: tuple[str, ...] = ()


def copied_reply(analysis: str, check: CopyCheck) -> str | None:
    """Why a judge's ``analysis`` is not its own, or None when it is.

    Issue 21 saw a real judge answer a fake end of turn by copying the analysis the answer
    had written for it, word for word, with the score it named. Such a reply carries the
    request's nonce and parses, yet its verdict is the answer's: it is not the judge's own when
    it reproduces a span flagged as addressed to the grader (whole, or half of it), or when
    more than half of it (quoted passages aside) is copied from the judged text's judge-like
    parts. Copying the answer's plain content is not caught: a judge restating the facts it
    judges (or the dry-run provider, which builds replies from them) writes no verdict of the
    answer's. Quotes (in quotation marks or ``>`` lines) are left out first: a logicality
    analysis that quotes the answer's error to name it is the judge's work."""
    own = fold(_QUOTED.sub(" ", analysis))
    if not own:
        return None
    for span in check.flagged:
        piece = fold(span)
        if _size(piece) >= _COPY_MIN_CHARS and (piece in own or _copied_chars(
                own, piece) >= min(_size(piece) // 2, 3 * _COPY_MIN_CHARS)):
            return ("the judge's analysis reproduces text the answer addressed to its grader: "
                    f"{short(span, 80)}")
    n = _copied_chars(own, fold("\n".join(check.judge_like)))
    if n > _COPY_SHARE * _size(own):
        return (f"the judge's analysis is copied from the judged text ({n} of {_size(own)} "
                "characters, from its judge-like sentences)")
    return None


# --------------------------------------------------------------------------- refusals

#: the opening of a judge's refusal to judge, in English or Chinese ("I cannot tell" is not
#: one: that judge is unsure, not refusing)
_REFUSE_VERBS = (r"(?:help|assist|comply|evaluate|judge|grade|rate|score|review|provide|"
                 r"fulfil|fulfill|do that|do this|continue|engage|process|respond)")
_REFUSAL = re.compile(
    r"^\W*(?:(?:i'?m|i am) sorry,? (?:but )?i (?:can(?:'|no)?t|cannot|won'?t|will not|"
    r"am unable|'m unable|am not able)"
    rf"|i (?:can(?:'|no)?t|cannot|won'?t|will not) {_REFUSE_VERBS}"
    rf"|(?:i'?m|i am) (?:not able|unable) to {_REFUSE_VERBS}"
    r"|as an ai\b"
    r"|(?:抱歉|对不起|很抱歉)[，,]?\s*我(?:无法|不能)"
    r"|我(?:无法|不能)(?:协助|帮助|评估|评判|评价|打分|提供|完成|回答|处理))", re.IGNORECASE)
#: error bodies of a provider's content filter (OpenAI, Azure, Zhipu, DeepSeek, …)
_CONTENT_FILTER = re.compile(r"content[_ ]?filter|content[_ ]?policy|content management polic"
                             r"|responsible ?ai|safety (?:system|filter|policy)|"
                             r"inappropriate content|sensitive content|不安全|敏感|违规",
                             re.IGNORECASE)


def is_refusal(reply: str) -> bool:
    """Whether a reply with no verdict opens as a refusal to judge ("I'm sorry, I can't…")."""
    return bool(_REFUSAL.match(reply.strip()[:200]))


def is_content_filter(message: str, finish_reason: str | None = None) -> bool:
    """Whether a finish reason or an error body says a content filter stopped the call."""
    return finish_reason == "content_filter" or bool(_CONTENT_FILTER.search(message))


def refusal_cause(messages: Sequence[Message]) -> Cause:
    """Who a refusal is blamed on: the answer when the request carried candidate text (the
    document and the question are the user's, and the same for every answer), else the judge."""
    return "answer" if fenced_texts(messages) else "judge"


def blame(reply: str, error: Exception, messages: Sequence[Message]) -> tuple[str, Cause]:
    """Why ``reply`` could not be read (``error``) and whose doing that is: the answer's when
    the reader says so (a verdict only the answer's text made ambiguous), when the judge
    refused to judge a request carrying the answer, or when every line of the reply repeats
    the answer (a judge that parroted it, e.g. obeying "reply with OK"); else the judge's."""
    reason = short(str(error))
    if isinstance(error, ReplyParseError) and error.cause == "answer":
        return reason, "answer"
    candidates = fenced_texts(messages)
    if candidates and is_refusal(reply):
        return f"the judge refused: {short(reply, 120)}", "answer"
    if candidates and parrots(reply, candidates):
        return f"the reply only repeats the judged text: {short(reply, 120)}", "answer"
    return reason, "judge"
