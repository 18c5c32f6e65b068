"""Probability-weighted verdicts (G-Eval's idea): a verdict read as the expected value over
the judge's distribution at the verdict token, instead of the one token it happened to write.

A judge that writes ``7`` with probability 0.55 and ``8`` with 0.40 and one that writes ``7``
with 0.99 give the same integer verdict; the expected values (7.4 and 7.0) tell them apart,
so two answers of one prompt tie less often and a pair can be chosen.

**Where the verdict token is.** The verdict is located first, by the same rules as an integer
verdict (``_verdict``: the one labelled with the request's nonce, else the fallback rules):
its ``span`` in the reply gives the characters of the value (JSON: the field's value inside
the located object, ``value_span``; text: the X of the ``[[X]]`` line, the nonce and its
separators left out). The reply's tokens are aligned with its text (their strings, or their
UTF-8 bytes when a token holds part of a character), and the *verdict token* is the token
covering the value's first character. Its alternatives (``top_logprobs``) are the judge's
distribution over verdicts: an answer's own copy of a verdict is never read, because only the
located verdict's position is.

**Mapping tokens to values.** ``values`` maps surface forms to numbers (``"7"`` → 7,
``"fully"`` → 1.0, ``"partially"`` → 0.5; matched case-blind). An alternative is read after
the text its token shares with the verdict token before the value (a quote, a space, ``[[``):

- a form written whole, or a prefix that only one value's forms start with (``"part"``), is
  that value;
- a prefix of forms with *different* values (``"1"``: 1, or the first digit of 10 in a
  tokenizer that writes digits one by one) is resolved when it can be: a terminator after it
  in the same token (``"1,"``) makes it 1; a tokenizer that also offers the longer form as one
  token (``"10"`` among the alternatives) makes it 1; when it is the token the judge actually
  wrote, the next token's distribution splits it (``"0"`` next → 10, anything else → 1).
  Otherwise (``"1"`` as an unchosen alternative in a digit-by-digit tokenizer) we cannot tell
  1 from 10 and its probability is left out;
- anything else (another word, a quote, a space) is left out.

The probability left out is not spread over the values: the expected value is taken over the
values' probabilities renormalised, and the share they had (``mass``) is recorded. A value
written with a fraction (``7.5``; the JSON prompts ask for a number) is read at its first
token, whose own probability stands for the value written (7.5) and whose alternatives for
theirs. When the value written is not one of ``values``, when the token the judge wrote is
itself not readable, or when ``mass`` is below ``MIN_MASS``, there is no expected value and
the caller keeps the integer verdict, with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ._types import TokenLogprob

#: how verdicts become numbers: the value the judge wrote, or the expected value over its
#: distribution at the verdict token (where the endpoint gives token log-probabilities)
Verdicts = Literal["integer", "expected"]

#: alternatives asked for at each reply token (OpenAI allows up to 20); 10 covers a 0–10
#: score's likely values and keeps a cached call's log-probabilities small
TOP_LOGPROBS = 10

#: below this share of the probability at the verdict token naming a value, the distribution
#: is not the judge's verdict (it was about to write something else): the integer is kept.
#: Low on purpose: llama.cpp reports the model's probabilities *before* its JSON grammar, so
#: mass on tokens the grammar forbids (a space, "supported" where the enum wants "fully") is
#: normal there, and renormalising over the values is what decoding under the grammar does
#: (SmolLM2-135M's grades on llama.cpp's server: 38% and 48% on the values)
MIN_MASS = 0.1

#: the 0–10 scores of helpfulness, logicality and completeness
SCORE_VALUES: dict[str, float] = {str(i): float(i) for i in range(11)}

_CORE = re.compile(r"[^\W_]+(?:\.\d+)?")


@dataclass(frozen=True)
class Expected:
    """An expected verdict: ``value`` over the values' renormalised probabilities
    (``distribution``, value → probability), which held ``mass`` of the probability at the
    verdict token (token ``at`` of the reply)."""

    value: float
    mass: float
    distribution: dict[float, float] = field(default_factory=dict)
    at: int = 0

    @property
    def window(self) -> tuple[int, int]:
        """The tokens whose alternatives it read: the verdict token and the next one."""
        return self.at, self.at + 2

    def to_dict(self) -> dict[str, object]:
        return {"expected": round(self.value, 4), "mass": round(self.mass, 4),
                "distribution": {f"{v:g}": round(p, 4) for v, p in
                                 sorted(self.distribution.items())}}


def token_starts(tokens: Sequence[TokenLogprob], text: str) -> list[int] | None:
    """The offset in ``text`` where each token starts, or None when the tokens do not spell
    ``text`` (by their strings, or by their bytes). A server that strips the reply's leading
    white space is allowed for: the text may start inside the first tokens."""
    joined = "".join(t.token for t in tokens)
    shift = 0 if joined == text else joined.find(text) if text else -1
    if shift >= 0:
        starts, pos = [], -shift
        for t in tokens:
            starts.append(pos)
            pos += len(t.token)
        return starts
    if all(t.bytes is not None for t in tokens):
        data = b"".join(bytes(t.bytes or []) for t in tokens)
        encoded = text.encode("utf-8")
        if data != encoded:
            return None
        # byte offset -> character offset (a token starting inside a character belongs to it)
        char_at = [0] * (len(encoded) + 1)
        pos = 0
        for i, ch in enumerate(text):
            n = len(ch.encode("utf-8"))
            for b in range(pos, pos + n):
                char_at[b] = i
            pos += n
        char_at[len(encoded)] = len(text)
        starts, pos = [], 0
        for t in tokens:
            starts.append(char_at[pos])
            pos += len(t.bytes or [])
        return starts
    return None


def _alternatives(token: TokenLogprob) -> dict[str, float]:
    """Probabilities of the tokens listed at one position (the written one always among
    them; the same string listed twice, as different token ids, summed)."""
    out: dict[str, float] = {}
    listed = token.top if any(t == token.token for t, _ in token.top) else [
        *token.top, (token.token, token.logprob)]
    for text, lp in listed:
        out[text] = out.get(text, 0.0) + math.exp(lp)
    return out


class _Forms:
    def __init__(self, values: Mapping[str, float]) -> None:
        self.values = {k.casefold(): float(v) for k, v in values.items()}

    def exact(self, core: str) -> float | None:
        return self.values.get(core.casefold())

    def starting(self, core: str) -> set[float]:
        c = core.casefold()
        return {v for k, v in self.values.items() if k.startswith(c)}

    def longer(self, core: str) -> set[float]:
        c = core.casefold()
        return {v for k, v in self.values.items() if k.startswith(c) and len(k) > len(c)}


def _after_prefix(alt: str, prefix: str) -> str | None:
    """What ``alt`` says after the text the verdict token shares before the value."""
    if alt.startswith(prefix):
        return alt[len(prefix):]
    if alt.lstrip().startswith(prefix.lstrip()):  # "7" for " 7": the space is not the verdict
        return alt.lstrip()[len(prefix.lstrip()):]
    return None


def expected_value(tokens: Sequence[TokenLogprob] | None, text: str, span: tuple[int, int],
                   values: Mapping[str, float]) -> Expected | str:
    """The expected verdict at ``span`` of ``text`` (see the module docstring), or why there
    is none (a sentence; the caller keeps the integer verdict and records it)."""
    if not tokens:
        return "the endpoint gave no token log-probabilities"
    starts = token_starts(tokens, text)
    if starts is None:
        return "the tokens' log-probabilities do not spell the reply"
    lo, hi = span
    written = text[lo:hi].strip()
    core = _CORE.match(written)
    forms = _Forms(values)
    head = core.group().split(".")[0] if core else ""
    if core is None or forms.exact(head) is None:
        return f"the verdict {written!r} is not one of the values weighed"
    # a fraction the judge wrote (0.5, 7.5): its first token stands for the value written
    fraction = None if forms.exact(core.group()) is not None else (
        forms.exact(head), float(core.group()))
    i = max((k for k, s in enumerate(starts) if s <= lo), default=None)
    if i is None or starts[i] + len(tokens[i].token) <= lo:
        return "no token covers the verdict"
    # the verdict token's text before the value (a quote, a space, "[["); a token that starts
    # before the reply (a server that strips its leading space) has its own text for it
    prefix = text[starts[i]:lo] if starts[i] >= 0 else tokens[i].token[:lo - starts[i]]
    alternatives = _alternatives(tokens[i])
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    by_value: dict[float, float] = {}
    chosen_read = False
    for alt, p in alternatives.items():
        rest = _after_prefix(alt, prefix)
        value_p = _read(rest, p, forms, alternatives, nxt if alt == tokens[i].token else None,
                        prefix)
        if alt == tokens[i].token and value_p:
            chosen_read = True
            if fraction is not None:
                value_p = {fraction[1] if v == fraction[0] else v: q for v, q in value_p.items()}
        for v, q in value_p.items():
            by_value[v] = by_value.get(v, 0.0) + q
    mass = sum(by_value.values())  # of 1: what the listed alternatives leave out is unread
    if not chosen_read:
        return f"the verdict token {tokens[i].token!r} cannot be read as a value"
    if mass < MIN_MASS:
        return (f"only {mass:.0%} of the probability at the verdict token names a value "
                f"(at least {MIN_MASS:.0%} needed)")
    dist = {v: q / mass for v, q in by_value.items()}
    return Expected(sum(v * q for v, q in dist.items()), mass, dist, i)


def trim(tokens: list[TokenLogprob], text: str, window: tuple[int, int] | None
         ) -> list[TokenLogprob]:
    """``tokens`` with the alternatives kept only in ``window`` (None: nowhere), and the
    bytes only where the strings do not spell ``text``: what is kept of a reply's
    log-probabilities once its verdict was weighed (``ModelClient.keep_logprobs``)."""
    spelled = token_starts([t.model_copy(update={"bytes": None}) for t in tokens],
                           text) is not None
    lo, hi = window or (0, 0)
    return [t if lo <= k < hi else t.model_copy(update={
        "top": [], "bytes": None if spelled else t.bytes}) for k, t in enumerate(tokens)]


def _read(rest: str | None, p: float, forms: _Forms, alternatives: Mapping[str, float],
          nxt: TokenLogprob | None, prefix: str) -> dict[float, float]:
    """The values one alternative (with probability ``p``) stands for, with their shares of
    ``p``; empty when it stands for none we can tell."""
    if rest is None:
        return {}
    stripped = rest.strip()
    m = _CORE.match(stripped)
    if m is None:
        return {}
    core = stripped[:m.end()]
    ended = m.end() < len(stripped)  # a terminator follows in the same token ("7," "1]]")
    exact = forms.exact(core)
    candidates = forms.starting(core)
    if exact is not None and (ended or not forms.longer(core) - {exact}):
        return {exact: p}
    if exact is None:
        if ended or len(candidates) != 1:
            return {}
        return {next(iter(candidates)): p}
    # ``core`` is a value and the start of others ("1" of "10"): does a longer one follow?
    longer = forms.longer(core) - {exact}
    for a in alternatives:
        r = _after_prefix(a, prefix)
        if r is not None and forms.exact(r.strip()) in longer:
            return {exact: p}  # the tokenizer writes the longer value in one token
    if nxt is None:
        return {}
    out: dict[float, float] = {}
    for alt, q in _alternatives(nxt).items():
        m2 = _CORE.match(alt)
        if m2 is None or alt[:1].isspace():  # the value ended here
            out[exact] = out.get(exact, 0.0) + p * q
            continue
        joined = forms.exact(core + alt[:m2.end()])
        if joined is not None:
            out[joined] = out.get(joined, 0.0) + p * q
        elif len(forms.starting(core + alt[:m2.end()])) == 1:
            v = next(iter(forms.starting(core + alt[:m2.end()])))
            out[v] = out.get(v, 0.0) + p * q
    # the next position's listed alternatives hold less than 1: the rest is not read
    return out
