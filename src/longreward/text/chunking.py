"""Token-sized chunks of a document, cut at natural boundaries.

LongReward retrieves 128-token chunks for faithfulness and extracts from 4096-token chunks for
completeness (§3.2). The reference code cuts at fixed token counts; we cut at the best
boundary (paragraph, then sentence, then word) found in the last ~15% of each window so the
judge never sees a sentence sliced in half, without ever going over the token budget.

The document is tokenized once; windows are computed over the array of token spans, so a
64k-token document chunks in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from longreward.text.tokenizers import Tokenizer, get_tokenizer

__all__ = ["Chunk", "chunk_text", "position_label"]

# Share of the window, counted back from its end, in which a natural boundary is looked for.
_LOOKBACK = 0.15

_CJK_TERMINATORS = frozenset("。！？；…")
_ASCII_TERMINATORS = frozenset(".!?")
_CLOSERS = frozenset("\"')]}”’」』）】》")

# Boundary ranks for a cut before a token.
_SPLITS_CHAR = -1  # both tokens come from one character (byte-level BPE): never cut here
_INSIDE_WORD = 0
_WORD = 1
_SENTENCE = 2
_PARAGRAPH = 3


@dataclass(frozen=True)
class Chunk:
    """A slice of a document: ``text == document[start:end]``, ``n_tokens`` tokens."""

    index: int
    start: int
    end: int
    text: str
    n_tokens: int


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF
        or 0x3400 <= o <= 0x9FFF
        or 0xAC00 <= o <= 0xD7AF
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x2FA1F
        or 0x3000 <= o <= 0x303F  # CJK punctuation
        or 0xFF00 <= o <= 0xFFEF  # full-width forms
    )


def _boundary_rank(text: str, spans: list[tuple[int, int]], c: int) -> int:
    """How good it is to end a chunk just before token ``c`` (``0 < c < len(spans)``)."""
    prev_start, prev_end = spans[c - 1]
    next_start, next_end = spans[c]
    if next_start < prev_end:
        return _SPLITS_CHAR
    # SentencePiece-style offsets put the space (or newline) before a word inside the next
    # token ("▁word"); count that leading whitespace as part of the gap.
    next_text = text[next_start:next_end]
    body = next_text.lstrip()
    lead = len(next_text) - len(body)
    prev_raw = text[prev_start:prev_end]
    prev_body = prev_raw.lstrip()
    # The previous token and all whitespace after it, but not whitespace before its body: in
    # "▁\n\nIn", the paragraph break lies before "In", not after it.
    body_start = prev_end - len(prev_body) if prev_body else prev_start
    between = text[body_start : next_start + lead]
    if between.count("\n") >= 2:
        return _PARAGRAPH
    gap = text[prev_end : next_start + lead]
    prev_text = prev_body.rstrip()
    # Look through a closing quote or bracket to the mark before it: `He left.” Then`.
    if prev_text and prev_text[-1] in _CLOSERS and c >= 2:
        before = text[spans[c - 2][0] : spans[c - 2][1]].rstrip()
        if before:
            prev_text = before
    last = prev_text[-1] if prev_text else ""
    next_char = body[:1]
    if "\n" in between:
        return _SENTENCE  # a line break: list items, headings, CJK prose
    if last in _CJK_TERMINATORS:
        return _SENTENCE
    # `3.5` has no gap and `e.g. the` goes on in lower case: neither ends a sentence.
    if last in _ASCII_TERMINATORS and gap and not next_char.islower():
        return _SENTENCE
    if gap or _is_cjk(next_char) or (last and _is_cjk(last)):
        return _WORD
    if not prev_text or not (prev_text[-1].isalnum() and next_char.isalnum()):
        return _WORD  # next to punctuation
    return _INSIDE_WORD


def _best_cut(text: str, spans: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Token index in ``[lo, hi]`` to cut before: latest among the best-ranked boundaries."""
    best, best_rank = hi, _INSIDE_WORD
    for c in range(hi, lo - 1, -1):
        rank = _boundary_rank(text, spans, c)
        if rank > best_rank:
            best, best_rank = c, rank
            if rank == _PARAGRAPH:
                break
    if best_rank == _INSIDE_WORD and _boundary_rank(text, spans, hi) == _SPLITS_CHAR:
        # Step back over tokens that share a character so the cut stays on a character edge.
        c = hi
        while c > lo and _boundary_rank(text, spans, c) == _SPLITS_CHAR:
            c -= 1
        best = c
    return best


def chunk_text(
    text: str,
    *,
    tokenizer: Tokenizer | str | None = None,
    chunk_tokens: int,
    overlap_tokens: int = 0,
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``chunk_tokens`` tokens that cover all of it.

    A chunk ends at a paragraph break, else a sentence end, else a word boundary, when one lies
    in the last ~15% of its window; otherwise it ends at exactly ``chunk_tokens`` tokens. Chunks
    are trimmed of surrounding whitespace, so consecutive chunks are separated by whitespace
    only (or overlap by ``overlap_tokens`` tokens when asked).

    ``tokenizer`` is a :class:`Tokenizer` or a spec for :func:`get_tokenizer` (default: regex).
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    if not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError(
            f"overlap_tokens must be in [0, chunk_tokens), got {overlap_tokens} "
            f"with chunk_tokens={chunk_tokens}"
        )
    tok = tokenizer if not isinstance(tokenizer, str | None) else get_tokenizer(tokenizer)
    spans = tok.spans(text)
    n = len(spans)
    lookback = max(1, math.ceil(chunk_tokens * _LOOKBACK)) if chunk_tokens > 1 else 0

    chunks: list[Chunk] = []
    i = 0
    prev_end = 0
    while i < n:
        hi = i + chunk_tokens
        cut = n if hi >= n else _best_cut(text, spans, max(i + 1, hi - lookback), hi)
        start = spans[i][0]
        if overlap_tokens == 0:
            start = max(start, prev_end)  # tokens sharing a character: do not repeat it
        end = max(spans[cut - 1][1], start)
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            start += len(piece) - len(piece.lstrip())
            end = start + len(stripped)
            chunks.append(Chunk(len(chunks), start, end, stripped, cut - i))
        prev_end = end
        if cut >= n:
            break
        # Overlap steps back, but always moves forward by at least one token.
        i = max(cut - overlap_tokens, i + 1)
    return chunks


def position_label(chunk: Chunk, total_chars: int) -> str:
    """Where the chunk lies in the document, e.g. ``"25%–50%"``.

    The reference labels each chunk's findings with its position so the judge can tell where
    in a long document a piece of evidence comes from.
    """
    if total_chars <= 0:
        return "0%–100%"
    lo = math.floor(100 * chunk.start / total_chars)
    hi = math.ceil(100 * chunk.end / total_chars)
    return f"{max(0, min(lo, 100))}%–{max(0, min(hi, 100))}%"
