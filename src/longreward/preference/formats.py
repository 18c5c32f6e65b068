"""Preference-pair formats: the one place that knows how each trainer spells a pair.

Writers (``pair_to_row``) are used by ``longreward pairs``; the reader (``pair_from_row``) is
used by ``longreward train`` and ``longreward mix``. A pair is always, inside longreward,
a prompt as chat messages plus two assistant answers.

Each format is one class here, registered with ``@pair_format``: how it writes a row, how it
reads one back, how a row of it is recognised, and the line that describes it in the dataset
card. The option validators, the CLI help and the card read the registry, so a new format is
this one class and its test.

Formats
- ``trl``: TRL conversational preference — ``prompt`` is a list of messages, ``chosen`` and
  ``rejected`` are lists holding one assistant message.
- ``trl_standard``: TRL standard preference — three strings.
- ``openrlhf``: OpenRLHF reward/DPO data — three strings under configurable keys
  (``--prompt_key/--chosen_key/--rejected_key`` in OpenRLHF).
- ``sharegpt``: LLaMA-Factory sharegpt preference — ``conversations`` (from/value turns),
  ``chosen`` and ``rejected`` as single ``gpt`` turns, optional ``system``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from string import Template
from typing import Any, ClassVar, Literal, TypeVar

from ..errors import RecordError

#: a registered format's name (see ``pair_formats()``)
PairFormat = str

#: default user-turn layout for a long-context prompt: document first, then the question,
#: which is how LongAlign/LongReward SFT data is laid out.
DEFAULT_PROMPT_TEMPLATE = "$context\n\n$query"

_SHAREGPT_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "observation": "user", "function_call": "assistant"}


@dataclass(frozen=True)
class PairKeys:
    """Column names for the ``openrlhf`` format."""

    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"


@dataclass
class PairExample:
    """A preference pair in longreward's own terms."""

    prompt: list[dict[str, str]]  # chat messages, last one is the user's
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict)


def check_prompt_template(template: str) -> str:
    """``template`` if it is a valid user-turn layout: ``$context`` and ``$query`` both
    appear and no other variable does. The one check for ``sample``, ``pairs`` and ``run``
    options, so a bad layout is an option error, not a traceback halfway through a stage."""
    tpl = Template(template)
    if hasattr(tpl, "is_valid") and not tpl.is_valid():
        raise ValueError("prompt template has a '$' that starts no variable; write $$ for a "
                         "literal dollar sign")
    names = set(tpl.get_identifiers()) if hasattr(tpl, "get_identifiers") else set()
    unknown = names - {"context", "query"}
    if unknown:
        raise ValueError(f"prompt template uses ${', $'.join(sorted(unknown))}; only $context "
                         "(the document) and $query (the question) exist")
    render_prompt("", "", template)
    return template


def render_prompt(context: str, query: str, template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """Fill the user-turn layout. ``$context`` and ``$query`` must both appear; filling is
    strict, so a misspelt variable is an error rather than a silently odd prompt."""
    tpl = Template(template)
    names = set(tpl.get_identifiers())
    missing = {"context", "query"} - names
    if missing:
        raise ValueError(f"prompt template must contain ${' and $'.join(sorted(missing))}")
    return tpl.substitute(context=context, query=query)


class PairFormatSpec(ABC):
    """One pair format. Subclass it, set ``name``, implement the four methods, and decorate
    the class with ``@pair_format``."""

    name: ClassVar[str]

    @abstractmethod
    def describe(self, keys: PairKeys) -> str:
        """The format in one line, for the dataset card."""

    @abstractmethod
    def to_row(self, pair: PairExample, keys: PairKeys) -> dict[str, Any]:
        """The row, without ``pair.meta`` (``pair_to_row`` adds it)."""

    @abstractmethod
    def claims(self, row: dict[str, Any], keys: PairKeys) -> bool:
        """Whether ``row`` looks like this format (formats are asked in registration order)."""

    @abstractmethod
    def from_row(self, row: dict[str, Any], keys: PairKeys, record: str
                 ) -> tuple[PairExample, set[str]]:
        """The pair of a row, and the columns that made it (the rest become ``meta``).
        Raises ``RecordError`` naming ``record`` and the field."""


_FORMATS: dict[str, PairFormatSpec] = {}
F = TypeVar("F", bound=type[PairFormatSpec])


def pair_format(cls: F) -> F:
    """Register a format class under its ``name``."""
    _FORMATS[cls.name] = cls()
    return cls


def pair_formats() -> tuple[str, ...]:
    """The registered format names, in detection order."""
    return tuple(_FORMATS)


def check_pair_format(name: str, *, auto: bool = False) -> str:
    """``name`` if it is a registered format (or ``"auto"`` when ``auto``), else a
    ``ValueError`` listing them: the one check behind every option that names a format."""
    if name in _FORMATS or (auto and name == "auto"):
        return name
    known = ", ".join((("auto",) if auto else ()) + pair_formats())
    raise ValueError(f"unknown pair format {name!r}; choose one of {known}")


def describe_format(name: str, keys: PairKeys | None = None) -> str:
    return _FORMATS[check_pair_format(name)].describe(keys or PairKeys())


def pair_to_row(pair: PairExample, fmt: PairFormat, keys: PairKeys | None = None) -> dict[str, Any]:
    """One output row in ``fmt``; ``pair.meta`` is added as extra columns (TRL, OpenRLHF and
    LLaMA-Factory ignore columns they do not know)."""
    row = _FORMATS[check_pair_format(fmt)].to_row(pair, keys or PairKeys())
    for k, v in pair.meta.items():
        row.setdefault(k, v)
    return row


def detect_pair_format(row: dict[str, Any], keys: PairKeys | None = None) -> PairFormat:
    keys = keys or PairKeys()
    for name, spec in _FORMATS.items():
        if spec.claims(row, keys):
            return name
    raise ValueError(
        "cannot tell the pair format: expected prompt/chosen/rejected (TRL, OpenRLHF) or "
        "conversations/chosen/rejected (LLaMA-Factory sharegpt)"
    )


def pair_from_row(
    row: dict[str, Any],
    fmt: PairFormat | Literal["auto"] = "auto",
    keys: PairKeys | None = None,
    record: str = "?",
) -> PairExample:
    """Parse one row of any supported format. Raises ``RecordError`` naming the record and
    field when the row is malformed."""
    keys = keys or PairKeys()
    if not isinstance(row, dict):
        raise RecordError(record, None, f"expected an object, got {type(row).__name__}")
    try:
        fmt = detect_pair_format(row, keys) if fmt == "auto" else check_pair_format(fmt)
    except ValueError as exc:
        raise RecordError(record, None, str(exc)) from None
    pair, used = _FORMATS[fmt].from_row(row, keys, record)
    if not any(m["content"].strip() for m in pair.prompt if m["role"] == "user"):
        raise RecordError(record, "prompt", "the prompt has no user text")
    pair.meta = {k: v for k, v in row.items() if k not in used}
    return pair


# ----------------------------------------------------------------------------- formats


@pair_format
class ShareGPT(PairFormatSpec):
    name = "sharegpt"

    def describe(self, keys: PairKeys) -> str:
        return ("LLaMA-Factory sharegpt preference (`conversations`/`chosen`/`rejected`, "
                "`ranking: true`)")

    def to_row(self, pair: PairExample, keys: PairKeys) -> dict[str, Any]:
        system = [m["content"] for m in pair.prompt if m["role"] == "system"]
        turns = [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]}
                 for m in pair.prompt if m["role"] != "system"]
        row: dict[str, Any] = {"conversations": turns,
                               "chosen": {"from": "gpt", "value": pair.chosen},
                               "rejected": {"from": "gpt", "value": pair.rejected}}
        if system:
            row["system"] = "\n\n".join(system)
        return row

    def claims(self, row: dict[str, Any], keys: PairKeys) -> bool:
        return "conversations" in row

    def from_row(self, row: dict[str, Any], keys: PairKeys, record: str
                 ) -> tuple[PairExample, set[str]]:
        turns = row.get("conversations")
        if not isinstance(turns, list) or not turns:
            raise RecordError(record, "conversations", "must be a non-empty list of turns")
        prompt = []
        if isinstance(row.get("system"), str) and row["system"]:
            prompt.append({"role": "system", "content": row["system"]})
        for i, t in enumerate(turns):
            if not isinstance(t, dict) or not isinstance(t.get("value"), str):
                raise RecordError(record, f"conversations[{i}]", "each turn needs a string 'value'")
            prompt.append({"role": _SHAREGPT_ROLE.get(str(t.get("from")), "user"),
                           "content": t["value"]})
        pair = PairExample(prompt, _answer_text(row, "chosen", record),
                           _answer_text(row, "rejected", record))
        return pair, {"conversations", "system", "chosen", "rejected"}


class _PromptChosenRejected(PairFormatSpec):
    """The formats with a prompt column and two answer columns."""

    def columns(self, keys: PairKeys) -> tuple[str, str, str]:
        return "prompt", "chosen", "rejected"

    def from_row(self, row: dict[str, Any], keys: PairKeys, record: str
                 ) -> tuple[PairExample, set[str]]:
        pk, ck, rk = self.columns(keys)
        raw_prompt = row.get(pk)
        if isinstance(raw_prompt, str):
            prompt = [{"role": "user", "content": raw_prompt}]
        elif isinstance(raw_prompt, list) and raw_prompt:
            prompt = []
            for i, m in enumerate(raw_prompt):
                if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                    raise RecordError(record, f"{pk}[{i}]", "each message needs 'role' and 'content'")
                prompt.append({"role": str(m.get("role", "user")), "content": m["content"]})
        else:
            raise RecordError(record, pk, "missing or empty prompt")
        pair = PairExample(prompt, _answer_text(row, ck, record), _answer_text(row, rk, record))
        return pair, {pk, ck, rk}


@pair_format
class TRL(_PromptChosenRejected):
    name = "trl"

    def describe(self, keys: PairKeys) -> str:
        return "TRL conversational preference (`prompt`/`chosen`/`rejected` as message lists)"

    def to_row(self, pair: PairExample, keys: PairKeys) -> dict[str, Any]:
        return {"prompt": [dict(m) for m in pair.prompt],
                "chosen": [{"role": "assistant", "content": pair.chosen}],
                "rejected": [{"role": "assistant", "content": pair.rejected}]}

    def claims(self, row: dict[str, Any], keys: PairKeys) -> bool:
        return isinstance(row.get("prompt"), list) or isinstance(row.get("chosen"), list)


@pair_format
class TRLStandard(_PromptChosenRejected):
    name = "trl_standard"

    def describe(self, keys: PairKeys) -> str:
        return "TRL standard preference (`prompt`/`chosen`/`rejected` strings)"

    def to_row(self, pair: PairExample, keys: PairKeys) -> dict[str, Any]:
        return {"prompt": _flatten_prompt(pair.prompt), "chosen": pair.chosen,
                "rejected": pair.rejected}

    def claims(self, row: dict[str, Any], keys: PairKeys) -> bool:
        return "prompt" in row and "chosen" in row and "rejected" in row


@pair_format
class OpenRLHF(_PromptChosenRejected):
    name = "openrlhf"

    def columns(self, keys: PairKeys) -> tuple[str, str, str]:
        return keys.prompt, keys.chosen, keys.rejected

    def describe(self, keys: PairKeys) -> str:
        return (f"OpenRLHF (`--prompt_key {keys.prompt} --chosen_key {keys.chosen}"
                f" --rejected_key {keys.rejected}`)")

    def to_row(self, pair: PairExample, keys: PairKeys) -> dict[str, Any]:
        return {keys.prompt: _flatten_prompt(pair.prompt), keys.chosen: pair.chosen,
                keys.rejected: pair.rejected}

    def claims(self, row: dict[str, Any], keys: PairKeys) -> bool:
        return keys.prompt in row and keys.chosen in row and keys.rejected in row


#: the built-in formats, for help texts (``pair_formats()`` also lists ones added later)
PAIR_FORMATS: tuple[str, ...] = pair_formats()


def _answer_text(row: dict[str, Any], key: str, record: str) -> str:
    value = row.get(key)
    # TRL conversational keeps the answer as a one-message list; sharegpt as one turn.
    if isinstance(value, list):
        texts = [m.get("content", m.get("value")) for m in value if isinstance(m, dict)]
        value = texts[-1] if texts else None
    elif isinstance(value, dict):
        value = value.get("value", value.get("content"))
    if not isinstance(value, str) or not value.strip():
        raise RecordError(record, key, "missing or empty answer text")
    return value


def _flatten_prompt(messages: list[dict[str, str]]) -> str:
    # Standard (string) formats carry only the user text; a system message, if any, is put
    # first so no information is dropped.
    return "\n\n".join(m["content"] for m in messages)
