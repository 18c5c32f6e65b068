"""Reading pair files and tokenising pairs for shared-prefix training.

Over-long prompts (policy)
    A pair fits when ``len(prompt) + max(len(chosen), len(rejected)) <= max_length``: the same
    budget an ordinary DPO trainer gives one sequence, so configs carry over. A prompt that does
    not fit is cut in the *middle of its longest user message* (the document, in LongReward's
    layout), keeping its head and tail tokens, because the question usually sits at the end and
    the document's opening at the start. Chat-template tokens and other messages are never
    touched. Every cut is counted (pairs and tokens) in :class:`DataReport`. A pair that still
    cannot fit (answers alone too long) is dropped and reported by record.

Answer tokens
    The prompt is rendered with the tokenizer's chat template (``add_generation_prompt=True``)
    and each answer's tokens are taken from the template's rendering of the assistant turn, up
    to its end-of-turn token (:class:`ChatTokens`): what generation produces and stops at.
    TRL 1.16 differs in two places (docs/training.md): its plain-string format appends the
    tokenizer's EOS to each answer, and for conversational data it also trains on what the
    template renders after the end-of-turn token (ChatML's newline after ``<|im_end|>``). Where
    a template cannot be split into prompt and answer, the record is rejected with the reason.

No torch here: this runs before the training stack is touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError, RecordError
from ..io.files import iter_rows
from ..preference.formats import PairExample, PairKeys, pair_from_row


@dataclass
class TokenizedPair:
    """One pair as token ids: ``prompt_ids`` is shared; each answer is what the chat template
    renders for the assistant turn, ending with its end-of-turn token."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    record: str
    truncated_tokens: int = 0  # prompt tokens removed by the middle cut
    #: how the answers' end was found (see ``ChatTokens.answer``)
    answer_end: str = "end_of_turn"
    #: an answer's tokens continue the prompt as generation does, not as the template's full
    #: rendering tokenises them (the two merge at the boundary; see ``ChatTokens``)
    generation_split: bool = False

    @property
    def packed_length(self) -> int:
        return len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)

    @property
    def sequence_length(self) -> int:
        """Prompt + the longer answer: the length of one ordinary DPO sequence, which
        ``max_length`` bounds."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


@dataclass
class DataReport:
    """What happened to each input row; printed by the CLI and written to the output dir."""

    n_rows: int = 0
    n_pairs: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (record, reason)
    n_truncated: int = 0
    n_truncated_tokens: int = 0
    n_answers_cut: int = 0
    #: pairs by how their answers' end was found: ``end_of_turn`` (the template's token after
    #: the answer), ``next_turn`` (the next turn's opening token), ``eos_appended`` (the template
    #: marks no end; the tokenizer's EOS was appended)
    answer_end: dict[str, int] = field(default_factory=dict)
    #: pairs trained on the prompt/answer split generation produces, where the template's full
    #: rendering merges the prompt's last token with the answer's first
    n_generation_split: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.n_rows, "pairs": self.n_pairs,
                "rejected": [{"record": r, "reason": m} for r, m in self.rejected],
                "prompts_truncated": self.n_truncated,
                "prompt_tokens_removed": self.n_truncated_tokens,
                "answers_cut": self.n_answers_cut, "answer_end": dict(self.answer_end),
                "generation_split": self.n_generation_split}


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


class AnswerTokens(NamedTuple):
    ids: list[int]
    #: how the end was found: ``end_of_turn``, ``next_turn`` or ``eos_appended``
    end: str
    #: the ids continue the prompt as generation does, where the full rendering merges the
    #: prompt's last token with the answer's first
    generation_split: bool = False


class ChatTokens:
    """The tokens of a conversation exactly as the tokenizer's chat template renders them.

    The prompt is the template's rendering with the generation prompt. An answer's tokens are
    the *difference* between the rendering of prompt + answer (as an assistant turn) and the
    prompt's, cut right after the template's end-of-turn token. That is what a model trained on
    this template sees and generates, including the pieces an answer tokenised on its own would
    get wrong (issue 9): a separator that belongs to the assistant header (GLM-4's newline after
    ``<|assistant|>``, the space after Mistral's ``[/INST]``), whitespace the template trims
    (Llama-3's ``| trim``), and the token that ends the turn (ChatML's ``<|im_end|>``, not the
    tokenizer's EOS when that is ``<|endoftext|>``). What the template renders after the
    end-of-turn token (ChatML's newline) is left out: generation stops at that token.

    The end-of-turn token is the first special token after the answer. A template that closes
    an assistant turn with no special token (GLM-4) is asked to render a following user turn,
    and its first special token (``<|user|>``) ends the answer: the template's own turn
    boundary, which such models generate to stop. Only a template with no special token at
    either place gets the tokenizer's EOS appended, and that is counted in the report.

    Where the rendering's tokens merge across the prompt/answer boundary (a generation prompt
    ending in a space, as ``Assistant: ``, whose space a SentencePiece tokenizer joins to the
    answer's first word; ChatML's newline and an answer's leading spaces), the split is the one
    generation produces: the prompt's tokens as rendered for generation, and the answer's text
    tokenised as their continuation. The model never sees the merged token after this prompt;
    it sees the prompt and generates on from its last token.
    """

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("the tokenizer has no chat template; use an instruct/chat model's "
                              "tokenizer, or set tokenizer.chat_template before training")
        self.tokenizer = tokenizer
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        for idx, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
            if getattr(tok, "special", False):
                special.add(int(idx))
        self.special_ids = frozenset(special)

    def render(self, messages: list[dict[str, str]], *, generation_prompt: bool,
               record: str = "?") -> str:
        try:
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=generation_prompt, tokenize=False)
        except Exception as exc:  # noqa: BLE001 - jinja raises its own errors (raise_exception)
            raise RecordError(record, "prompt", f"the chat template refused the conversation: "
                                                f"{exc}") from None

    def ids(self, text: str) -> list[int]:
        # The rendered text already holds BOS (if any): no special tokens are added again.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, messages: list[dict[str, str]], record: str = "?") -> tuple[str, list[int]]:
        text = self.render(messages, generation_prompt=True, record=record)
        return text, self.ids(text)

    def answer(self, messages: list[dict[str, str]], answer: str, prompt_text: str,
               prompt_ids: list[int], record: str = "?", field: str = "answer",
               ) -> AnswerTokens:
        """The answer's tokens, how its end was found (``end_of_turn``, ``next_turn`` or
        ``eos_appended``) and whether they continue a prompt the full rendering merges them
        with. Raises ``RecordError`` when the template cannot be split into prompt and
        answer."""
        inner = [i for i in self.ids(answer) if i in self.special_ids]
        if inner:
            name = self.tokenizer.convert_ids_to_tokens(inner[0])
            raise RecordError(record, field, f"the answer contains the special token {name!r} "
                                             "as text; the chat template's turn would end there. "
                                             "Remove it from the answer")
        turn = [*messages, {"role": "assistant", "content": answer}]
        rest, split = self._after_prompt(turn, prompt_text, prompt_ids, record, field)
        end = next((j for j, i in enumerate(rest) if i in self.special_ids), None)
        if end is not None:
            return AnswerTokens(rest[: end + 1], "end_of_turn", split)
        follow = [*turn, {"role": "user", "content": "Thank you."}]
        rest2, split2 = self._after_prompt(follow, prompt_text, prompt_ids, record, field)
        end = next((j for j, i in enumerate(rest2) if i in self.special_ids), None)
        if end is not None:
            if rest2[:end] != rest:
                raise RecordError(record, field, "the chat template renders no end-of-turn token "
                                                 "after an answer, and renders the answer "
                                                 "differently when a turn follows; its answer "
                                                 "tokens cannot be told apart. Use a template "
                                                 "that closes the assistant turn with a special "
                                                 "token")
            return AnswerTokens(rest2[: end + 1], "next_turn", split2)
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise RecordError(record, field, "the chat template marks no end of the assistant "
                                             "turn and the tokenizer has no EOS token; set "
                                             "tokenizer.eos_token")
        return AnswerTokens([*rest, int(eos)], "eos_appended", split)

    def _after_prompt(self, messages: list[dict[str, str]], prompt_text: str,
                      prompt_ids: list[int], record: str, field: str) -> tuple[list[int], bool]:
        """The tokens after the prompt in the rendering of ``messages``, and whether they had
        to be split as generation does (see the class docstring)."""
        text = self.render(messages, generation_prompt=False, record=record)
        if not text.startswith(prompt_text):
            raise RecordError(record, field, "the chat template renders the prompt differently "
                                             "when an answer follows it (its generation prompt "
                                             "is not a prefix of prompt + answer), so the "
                                             "answer's tokens cannot be taken from it. Fix the "
                                             "template, or train with one whose generation "
                                             "prompt starts the assistant turn as written")
        ids = self.ids(text)
        if ids[: len(prompt_ids)] == prompt_ids:
            return ids[len(prompt_ids):], False
        # The rendering's tokens merge across the boundary. The answer's text is tokenised as
        # a continuation of the prompt's tokens, in the first of these ways that gives back
        # the rendered text exactly.
        decode = self.tokenizer.decode
        rendered = decode(ids, skip_special_tokens=False)
        for rest in self._continuations(text[len(prompt_text):]):
            if decode(prompt_ids + rest, skip_special_tokens=False) == rendered:
                return rest, True
        raise RecordError(record, field, "the prompt's last token and the answer's first token "
                                         "merge when rendered together, and no tokenisation of "
                                         "the answer on its own continues the prompt into the "
                                         "same text; check the template's generation prompt")

    def _continuations(self, text: str) -> Iterator[list[int]]:
        """Ways to tokenise ``text`` as the continuation of other tokens: on its own (right
        for byte-level BPE), then after an anchor whose own tokens are dropped (a newline or a
        special token): a SentencePiece tokenizer marks the start of its input as a word start
        (``▁``), which would put a space the rendering does not have before the answer."""
        yield self.ids(text)
        anchors = ["\n", *(t for t in (self.tokenizer.eos_token, self.tokenizer.bos_token) if t)]
        for anchor in anchors:
            head, both = self.ids(anchor), self.ids(anchor + text)
            if head and both[: len(head)] == head:
                yield both[len(head):]


def cut_middle(ids: list[int], n_remove: int) -> list[int]:
    """Drop ``n_remove`` tokens from the middle of ``ids``, keeping head and tail."""
    if n_remove <= 0:
        return list(ids)
    keep = max(len(ids) - n_remove, 0)
    head = keep // 2
    tail = keep - head
    return ids[:head] + (ids[len(ids) - tail:] if tail else [])


def tokenize_pair(pair: PairExample, tokenizer: Any, max_length: int, record: str = "?",
                  max_answer_length: int = 0,
                  chat: ChatTokens | None = None) -> tuple[TokenizedPair, bool]:
    """Tokenise one pair under the over-long policy above. Returns ``(pair, answers_cut)``;
    raises ``RecordError`` when the pair cannot be made to fit or the template cannot be split."""
    chat = chat or ChatTokens(tokenizer)
    messages = [dict(m) for m in pair.prompt]
    prompt_text, prompt = chat.prompt(messages, record)
    chosen, end_c, split_c = chat.answer(messages, pair.chosen, prompt_text, prompt, record,
                                         "chosen")
    rejected, end_r, split_r = chat.answer(messages, pair.rejected, prompt_text, prompt, record,
                                           "rejected")
    answers_cut = False
    if max_answer_length > 0:
        answers_cut = len(chosen) > max_answer_length or len(rejected) > max_answer_length
        chosen, rejected = chosen[:max_answer_length], rejected[:max_answer_length]
    budget = max_length - max(len(chosen), len(rejected))
    original = len(prompt)
    if len(prompt) > budget:
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        target = max(users, key=lambda i: len(messages[i]["content"]))
        content_ids = chat.ids(messages[target]["content"])
        excess = len(prompt) - budget
        # Decoding and re-encoding at the cut can merge or split a token or two, so the cut is
        # retried with a growing margin until the rendered prompt fits. The answers keep the
        # tokens they have after the uncut prompt: a template renders an answer the same
        # whatever the document says.
        for margin in (0, 2, 8, 32, 128):
            if excess + margin >= len(content_ids):
                break
            messages[target]["content"] = tokenizer.decode(
                cut_middle(content_ids, excess + margin), skip_special_tokens=False)
            prompt = chat.prompt(messages, record)[1]
            if len(prompt) <= budget:
                break
        if len(prompt) > budget:
            raise RecordError(record, "prompt",
                              f"cannot fit in max_length={max_length}: the answers take "
                              f"{max(len(chosen), len(rejected))} tokens and the prompt's "
                              f"non-document part {len(prompt) - len(content_ids)}; raise "
                              "--max-length or set --max-answer-length")
    tp = TokenizedPair(prompt, chosen, rejected, record, original - len(prompt),
                       answer_end=end_c if end_c == end_r else f"{end_c}/{end_r}",
                       generation_split=split_c or split_r)
    return tp, answers_cut


def build_dataset(path: str | Path, tokenizer: Any, max_length: int, fmt: str = "auto",
                  keys: PairKeys | None = None,
                  max_answer_length: int = 0) -> tuple[list[TokenizedPair], DataReport]:
    """Read, validate and tokenise a pair file. Bad rows are reported, never fatal."""
    chat = ChatTokens(tokenizer)  # a tokenizer without a chat template stops here, once
    examples, report = read_pairs(path, fmt, keys)
    pairs: list[TokenizedPair] = []
    for record, ex in examples:
        try:
            tp, cut = tokenize_pair(ex, tokenizer, max_length, record, max_answer_length, chat)
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
        report.answer_end[tp.answer_end] = report.answer_end.get(tp.answer_end, 0) + 1
        report.n_generation_split += int(tp.generation_split)
        pairs.append(tp)
    report.n_pairs = len(pairs)
    return pairs, report
