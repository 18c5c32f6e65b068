"""Prompt files: one per judge step and language, beside the dimension modules.

A file holds four sections, each opened by a marker line::

    <!-- system -->      static instructions and few-shot examples
    <!-- user -->        the per-call part, with $placeholders
    <!-- reply:json -->  how to reply when a JSON schema is requested
    <!-- reply:text -->  how to reply in tagged text when the endpoint has no schemas

The system message is system + the reply section of the mode in use, so everything before
the document/candidate is static and endpoints can reuse their prefix cache. Filling is
strict: a missing or unexpected variable raises ``MissingVariablesError``.

Candidate text is data. The answers we judge come from the policy trained against this
reward, which will search for any way to write its own score, so the variables that carry
candidate text (``FENCED``: the answer, the statements taken from it) are not pasted into
the prompt as they are: each is fenced between tags whose boundary is derived from a hash of
the text (``judge._verdict.fence``), which the text cannot close or imitate; the prompts'
system text tells the judge so. The boundary is a function of the content, so the same
request is the same cache key on every run.

A step whose prompt carries candidate text also ends its user message, after the candidate,
with a *verdict code* (``$nonce``): a per-request nonce the judge copies into its verdict, so
that the verdict carrying it is known to be the judge's own (``judge._verdict``). It comes
last so that everything before the candidate stays a cacheable prefix.

The system message starts with ``<!-- step: NAME -->``: an explicit step id, so logs, proxies
and the test doubles can tell the steps apart without reading the prompt's prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Literal

from ...judge import Message, PromptText, ReplyMode, fence, neutralise

Language = Literal["en", "zh"]


#: prompt variables that carry candidate text, and the tag each is fenced in
FENCED = {"response": "answer", "statement": "statement_to_check",
          "statements": "statements_to_check", "answer_a": "answer_a", "answer_b": "answer_b"}

_MARKERS = ("<!-- system -->", "<!-- user -->", "<!-- reply:json -->", "<!-- reply:text -->")


class MissingVariablesError(KeyError):
    """A prompt template was rendered without one of its variables. Our prompts are fixed
    text, so this is a bug in a dimension, not bad input: deliberately not a
    ``LongRewardError``, so it surfaces as an internal error with its traceback."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    language: str
    system: str
    user: Template
    reply: dict[str, str]
    variables: frozenset[str]

    @property
    def takes_nonce(self) -> bool:
        """Whether the prompt asks for a verdict code (``$nonce``)."""
        return "nonce" in self.variables

    def messages(self, mode: ReplyMode, **variables: str) -> list[Message]:
        given = set(variables)
        if given != self.variables:
            missing = sorted(self.variables - given)
            extra = sorted(given - self.variables)
            raise MissingVariablesError(
                f"prompt {self.name}.{self.language}: missing {missing}, unexpected {extra}")
        system = f"{self.system}\n\n{self.reply[mode]}".strip()
        values = {k: fence(FENCED[k], v) if k in FENCED else v for k, v in variables.items()}
        return [Message(role="system", content=system),
                Message(role="user", content=self.user.substitute(values).strip())]

    def static_text(self) -> str:
        """Every fixed line of the prompt; the text parsers ignore reply lines that merely
        repeat it, so an echoing judge cannot be read as scoring."""
        return "\n".join([self.system, self.user.template, *self.reply.values()])

    def shown(self, **variables: str) -> PromptText:
        """What a reply parser needs to know of the prompt: its fixed text, the fenced
        candidate texts as the judge saw them (to recognise quotes and copied verdicts) and
        the request's nonce (to recognise the judge's own verdict)."""
        return PromptText(self.static_text(),
                          [neutralise(variables[k]) for k in FENCED if k in variables],
                          variables.get("nonce"))


def parse_prompt_file(name: str, language: str, text: str) -> PromptTemplate:
    positions = [text.find(m) for m in _MARKERS]
    if any(p < 0 for p in positions) or positions != sorted(positions):
        raise ValueError(f"prompt {name}.{language}: needs the sections {', '.join(_MARKERS)} "
                         "in that order")
    parts = []
    for i, marker in enumerate(_MARKERS):
        end = positions[i + 1] if i + 1 < len(_MARKERS) else len(text)
        parts.append(text[positions[i] + len(marker):end].strip())
    user = Template(parts[1])
    system = f"<!-- step: {name} -->\n{parts[0]}"
    return PromptTemplate(name=name, language=language, system=system, user=user,
                          reply={"json": parts[2], "text": parts[3]},
                          variables=frozenset(user.get_identifiers()))


@cache
def load_prompt(name: str, language: str, package: str | None = None) -> PromptTemplate:
    """``prompts/{name}.{language}.md`` beside the dimensions, or beside the modules of
    ``package`` (e.g. ``longreward.eval``) when given."""
    lang = language if language in ("en", "zh") else "en"
    path = resources.files(package or __package__).joinpath("prompts", f"{name}.{lang}.md")
    return parse_prompt_file(name, lang, path.read_text(encoding="utf-8"))
