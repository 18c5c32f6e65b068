"""Tokenizers that report character offsets, so chunk sizes are measured in tokens.

The paper cuts documents into 128-token chunks for faithfulness retrieval and 4096-token
chunks for completeness (LongReward §3). Those sizes are in the judge's tokens. Loading the
judge's tokenizer is optional: the default :class:`RegexTokenizer` needs no download and
approximates a GPT-style BPE closely enough for sizing chunks. Pass a Hugging Face name or
local path to :func:`get_tokenizer` to count exactly.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from longreward.errors import MissingDependencyError, UsageError

__all__ = ["HFTokenizer", "RegexTokenizer", "Tokenizer", "get_tokenizer", "pretrained_source",
           "trained_window"]

#: config fields that hold the context window a model was trained with, by model family
_WINDOW_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length",
                  "seq_length", "max_seq_len")


def trained_window(config: Any) -> tuple[str, int] | None:
    """(field, tokens) of the window a model was trained with, from its config (a
    transformers config object or its dict); ``None`` when the config does not say."""
    for name in _WINDOW_FIELDS:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return name, value
    return None


def pretrained_source(spec: str) -> tuple[str, dict[str, Any]]:
    """What ``from_pretrained`` gets for a Hub name, a directory or a ``.gguf`` file:
    transformers reads the tokenizer, chat template and config stored in a GGUF when given
    its directory and ``gguf_file=`` (needs the ``gguf`` package)."""
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return str(path.parent), {"gguf_file": path.name}
    return spec, {}


@runtime_checkable
class Tokenizer(Protocol):
    """Anything that can split text into tokens and say where each token lies."""

    name: str

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of every token, in order."""
        ...

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        ...


# Scripts written without spaces, where a BPE vocabulary spends about one token per character.
_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0002fa1f"  # CJK extensions B-F and supplement
)

# Why these pieces (measured on English prose against the usual "1 token ~ 4 characters ~
# 0.75 words" of GPT-style BPEs):
# - A BPE vocabulary holds most common words whole, so splitting every word into 4-letter
#   pieces over-counts by ~40%. Pieces of at most 7 letters keep words up to 7 letters whole
#   and split longer (rarer, often compound) words in two or three. On a 41k-character
#   English paper this gives 0.99 x (characters / 4) and 1.24 x (words / 0.75): inside both
#   rules of thumb' +-25%, erring slightly high so a 4096-token chunk never overflows.
# - Digits go in groups of at most 3, as cl100k/o200k do.
# - Every CJK character is one token: frequent Chinese characters are single tokens in modern
#   vocabularies, rare ones take two or three, so this errs slightly low on Chinese.
# - Each punctuation mark is one token; a run of newlines is one token (BPEs merge "\n\n").
# - Other whitespace belongs to the following word, as in BPEs, so it is not a token.
_TOKEN_RE = re.compile(
    rf"[{_CJK}]"
    rf"|[^\W\d_{_CJK}]{{1,7}}"
    r"|\d{1,3}"
    r"|\n+"
    r"|[^\w\s]|_"
)


class RegexTokenizer:
    """Dependency-free approximation of a subword tokenizer (see the heuristic above)."""

    name = "regex"

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _TOKEN_RE.finditer(text)]

    def count(self, text: str) -> int:
        return sum(1 for _ in _TOKEN_RE.finditer(text))

    def __repr__(self) -> str:
        return "RegexTokenizer()"


class HFTokenizer:
    """A Hugging Face *fast* tokenizer, loaded by hub name, local path or ``.gguf`` file.

    ``transformers`` is imported on first use only. Documents run to 128k tokens, past most
    models' ``model_max_length``: encoding goes through the Rust backend with truncation
    switched off, so nothing is cut and no length warning is printed. Special tokens are not
    added because the counts are of document text, not of a model input.
    """

    def __init__(self, name_or_path: str) -> None:
        self.name = name_or_path
        self._backend: Any = None

    def _load(self) -> Any:
        if self._backend is not None:
            return self._backend
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                "A Hugging Face tokenizer", "transformers", "local"
            ) from exc
        try:
            location, kwargs = pretrained_source(self.name)
            tokenizer = AutoTokenizer.from_pretrained(location, use_fast=True, **kwargs)
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"Could not load the tokenizer {self.name!r} ({exc}). Pass a local directory "
                "that holds a tokenizer.json, a .gguf model file, a Hugging Face name that is "
                "cached or reachable, or 'regex' for the built-in approximation."
            ) from exc
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(
                f"Tokenizer {self.name!r} has no fast (Rust) implementation, which is needed "
                "for character offsets. Pick a tokenizer with a tokenizer.json, or use the "
                "default 'regex' tokenizer."
            )
        # A tokenizer.json may carry truncation/padding settings for model inputs; counting a
        # document must see all of it.
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        return backend

    def spans(self, text: str) -> list[tuple[int, int]]:
        if not text:
            return []
        encoding = self._load().encode(text, add_special_tokens=False)
        return [(int(s), int(e)) for s, e in encoding.offsets]

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._load().encode(text, add_special_tokens=False).ids)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r})"


@functools.lru_cache(maxsize=16)
def _cached(spec: str) -> Tokenizer:
    if spec == "regex":
        return RegexTokenizer()
    return HFTokenizer(spec)


def get_tokenizer(spec: str | None = None) -> Tokenizer:
    """Return the tokenizer for ``spec``: ``None``/``"regex"`` or a Hugging Face name/path.

    Tokenizers are cached per spec, so every document in a run shares one loaded tokenizer.
    """
    return _cached("regex" if spec is None or spec.strip() in ("", "regex") else spec.strip())
