"""Reading pair files and tokenising pairs for shared-prefix training.

Over-long prompts (policy)
    A pair fits when ``len(prompt) + max(len(chosen), len(rejected)) <= max_length``: the same
    budget an ordinary DPO trainer gives one sequence, so configs carry over. A prompt that does
    not fit is cut in the *middle of its longest user message* (the document, in LongReward's
    layout), keeping its head and tail tokens, because the question usually sits at the end and
    the document's opening at the start. Chat-template tokens and other messages are never
    touched. Every cut is counted (pairs and tokens) in :class:`DataReport`. A pair that still
    cannot fit (answers alone too long) is dropped and reported by record.

Answers are tokenised on their own and followed by EOS, as TRL and OpenRLHF do; the prompt is
rendered with the tokenizer's chat template with ``add_generation_prompt=True``.

No torch here: this runs before the training stack is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecordError
from ..io.files import iter_rows
from ..preference.formats import PairExample, PairKeys, pair_from_row


@dataclass
class TokenizedPair:
    """One pair as token ids: ``prompt_ids`` is shared, each answer ends with EOS."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    record: str
    truncated_tokens: int = 0  # prompt tokens removed by the middle cut

    @property
    def packed_length(self) -> int:
        return len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


@dataclass
class DataReport:
    """What happened to each input row; printed by the CLI and written to the output dir."""

    n_rows: int = 0
    n_pairs: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (record, reason)
    n_truncated: int = 0
    n_truncated_tokens: int = 0
    n_answers_cut: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.n_rows, "pairs": self.n_pairs,
                "rejected": [{"record": r, "reason": m} for r, m in self.rejected],
                "prompts_truncated": self.n_truncated,
                "prompt_tokens_removed": self.n_truncated_tokens,
                "answers_cut": self.n_answers_cut}


def read_pairs(path: str | Path, fmt: str = "auto",
               keys: PairKeys | None = None) -> tuple[list[tuple[str, PairExample]], DataReport]:
    """Parse every row; malformed rows go into the report with their record and reason."""
    report = DataReport()
    out: list[tuple[str, PairExample]] = []
    # The package's one reader: JSONL, JSON and Parquet; bad lines come back as RecordErrors.
    for record, row in iter_rows(path):
        report.n_rows += 1
        try:
            if isinstance(row, RecordError):
                raise row
            out.append((record, pair_from_row(row, fmt=fmt, keys=keys, record=record)))  # type: ignore[arg-type]
        except RecordError as exc:
            report.rejected.append((record, str(exc)))
    return out, report


def _render_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; use an instruct/chat model's "
                         "tokenizer or set tokenizer.chat_template before training")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template already holds BOS (if any), so no special tokens are added again.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _answer_ids(tokenizer: Any, text: str) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; answers must end with one")
    return ids + [int(tokenizer.eos_token_id)]


def cut_middle(ids: list[int], n_remove: int) -> list[int]:
    """Drop ``n_remove`` tokens from the middle of ``ids``, keeping head and tail."""
    if n_remove <= 0:
        return list(ids)
    keep = max(len(ids) - n_remove, 0)
    head = keep // 2
    tail = keep - head
    return ids[:head] + (ids[len(ids) - tail:] if tail else [])


def tokenize_pair(pair: PairExample, tokenizer: Any, max_length: int, record: str = "?",
                  max_answer_length: int = 0) -> tuple[TokenizedPair, bool]:
    """Tokenise one pair under the over-long policy above. Returns ``(pair, answers_cut)``;
    raises ``RecordError`` when the pair cannot be made to fit."""
    chosen = _answer_ids(tokenizer, pair.chosen)
    rejected = _answer_ids(tokenizer, pair.rejected)
    answers_cut = False
    if max_answer_length > 0:
        answers_cut = len(chosen) > max_answer_length or len(rejected) > max_answer_length
        chosen, rejected = chosen[:max_answer_length], rejected[:max_answer_length]
    messages = [dict(m) for m in pair.prompt]
    prompt = _render_prompt_ids(tokenizer, messages)
    budget = max_length - max(len(chosen), len(rejected))
    original = len(prompt)
    if len(prompt) > budget:
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        target = max(users, key=lambda i: len(messages[i]["content"]))
        content_ids = list(tokenizer(messages[target]["content"], add_special_tokens=False)["input_ids"])
        excess = len(prompt) - budget
        # Decoding and re-encoding at the cut can merge or split a token or two, so the cut is
        # retried with a growing margin until the rendered prompt fits.
        for margin in (0, 2, 8, 32, 128):
            if excess + margin >= len(content_ids):
                break
            messages[target]["content"] = tokenizer.decode(
                cut_middle(content_ids, excess + margin), skip_special_tokens=False)
            prompt = _render_prompt_ids(tokenizer, messages)
            if len(prompt) <= budget:
                break
        if len(prompt) > budget:
            raise RecordError(record, "prompt",
                              f"cannot fit in max_length={max_length}: the answers take "
                              f"{max(len(chosen), len(rejected))} tokens and the prompt's "
                              f"non-document part {len(prompt) - len(content_ids)}; raise "
                              "--max-length or set --max-answer-length")
    return TokenizedPair(prompt, chosen, rejected, record, original - len(prompt)), answers_cut


def build_dataset(path: str | Path, tokenizer: Any, max_length: int, fmt: str = "auto",
                  keys: PairKeys | None = None,
                  max_answer_length: int = 0) -> tuple[list[TokenizedPair], DataReport]:
    """Read, validate and tokenise a pair file. Bad rows are reported, never fatal."""
    examples, report = read_pairs(path, fmt, keys)
    pairs: list[TokenizedPair] = []
    for record, ex in examples:
        try:
            tp, cut = tokenize_pair(ex, tokenizer, max_length, record, max_answer_length)
        except RecordError as exc:
            report.rejected.append((record, str(exc)))
            continue
        if tp.chosen_ids == tp.rejected_ids:
            report.rejected.append((record, f"record {record}: chosen and rejected are identical "
                                            "after tokenisation; the pair carries no preference"))
            continue
        if tp.truncated_tokens:
            report.n_truncated += 1
            report.n_truncated_tokens += tp.truncated_tokens
        report.n_answers_cut += int(cut)
        pairs.append(tp)
    report.n_pairs = len(pairs)
    return pairs, report
