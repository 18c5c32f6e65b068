"""The wire formats trainers already speak, turned into ``ScoreItem``s and back.

- native ``POST /score``: ``{"items": [{id?, prompt_id | context, query?, response}]}``
- OpenRLHF ``POST /get_reward``: ``{"query": [...], "prompts": [...], "labels": [...]}``,
  where each query is the prompt and the response decoded as one string (chat-template
  tokens included); the answer is the query minus its prompt — or minus the part of it the
  policy saw, when OpenRLHF cut a long prompt (``split_query``). OpenRLHF turns every
  ``rewards`` and ``extra_logs`` value into a tensor, so those are numbers only: never null.
- listwise ``POST /listwise``: ``{prompt_id | context, query?, responses: [...], ids?}`` →
  the best and the worst answer of the group (``preference.listwise``), no reward
- slime ``POST /slime``: ``{"prompt", "response", "label"}`` per sample → a dict with a
  ``reward`` key (slime ``--reward-key reward``), or a bare number with ``?format=number``;
  the reward is a number (slime's group normalisation runs ``torch.tensor`` on it).

Labels name a registered prompt by id; a label may also be an object (or its JSON text)
with ``prompt_id`` and optionally ``query``/``context``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..errors import LongRewardError, RecordError
from ..io.records import document_text
from ._service import Fill, ItemResult, ScoreItem

#: longest reason text copied into an OpenRLHF/slime reply (the native reply has it whole)
_REASON_CHARS = 500
#: a cut prompt is recognised by its last characters (they survive a cut on the left)
_TAIL_CHARS = 32
#: a prompt cut on the right must keep at least this many characters to be recognised
_MIN_HEAD_CHARS = 32
#: U+FFFD: what a decoder makes of a multi-byte character whose first bytes were cut off
_REPLACEMENT = "\ufffd"


def _one_text(value: Any) -> Any:
    """A document given as a list of strings (sentences, paragraphs: as the file stages take
    it) is joined the way the file stages join it, so the same document is the same text,
    and the same registration, whichever way it came."""
    if not isinstance(value, list):
        return value
    try:
        return document_text(value, "document", "context")
    except RecordError as exc:  # a 422 that says which element, not a 500
        raise ValueError(f"{exc.field}: {exc.reason}") from None


#: a document: a string, or a list of strings joined as the file stages join them
DocumentText = Annotated[str, BeforeValidator(_one_text)]


class NativeItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    prompt_id: str | None = None
    context: DocumentText | None = None
    query: str | None = None
    response: str
    #: set by a client that already knows the item cannot be scored (why): it comes back
    #: with this reason, filled like any failure (an adapter's refused sample)
    error: str | None = None


class NativeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[NativeItem]
    #: what an item that cannot be scored receives: null, or (for a trainer that needs a
    #: number) the neutral reward
    fill: Fill = "null"
    #: seconds, at most the server's ``request_timeout`` (the default)
    deadline: float | None = Field(default=None, gt=0)


class ListwiseRequest(BaseModel):
    """``POST /listwise``: one prompt's answers (a group, as GRPO-style trainers sample
    them), judged together; the reply names the best and the worst (no reward)."""

    model_config = ConfigDict(extra="forbid")

    prompt_id: str | None = None
    context: str | None = None
    query: str | None = None
    responses: list[str] = Field(min_length=2)
    #: the answers' ids, echoed in the reply (default: their positions, "0", "1", …)
    ids: list[str] | None = None
    #: answers per judge call (more: a tournament); default the service's
    group_size: int | None = Field(default=None, ge=3)
    deadline: float | None = Field(default=None, gt=0)


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    context: DocumentText = Field(min_length=1)
    query: str | None = None


class DocumentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn]
    #: replace the document or question of an id registered with other content
    replace: bool = False


class OpenRLHFRequest(BaseModel):
    # OpenRLHF may add fields in later versions; unknown ones are ignored, not refused.
    model_config = ConfigDict(extra="allow")

    query: list[str] = Field(default_factory=list)
    prompts: list[Any] | None = None
    labels: list[Any] | None = None


class SlimeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: Any = None
    response: str
    label: Any = None


class ProtocolError(LongRewardError, ValueError):
    """A request that is well-formed JSON but cannot be answered item by item (e.g. lists
    of different lengths): the whole request is refused with 422 and this message."""


def native_items(req: NativeRequest) -> list[ScoreItem]:
    return [ScoreItem(response=it.response, id=it.id, prompt_id=it.prompt_id,
                      context=it.context, query=it.query, error=it.error) for it in req.items]


def native_reply(results: list[ItemResult]) -> dict[str, Any]:
    counts = {s: sum(r.status == s for r in results) for s in ("scored", "unscored", "error")}
    return {"items": [r.to_dict() for r in results], "summary": counts}


def label_fields(label: Any) -> dict[str, Any]:
    """A label as item fields: an id string, an object, or an object's JSON text."""
    if label is None:
        return {}
    if isinstance(label, str):
        text = label.strip()
        if text.startswith("{"):
            try:
                label = json.loads(text)
            except ValueError:
                return {"prompt_id": label}
        else:
            return {"prompt_id": label}
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        return {"prompt_id": str(label)}
    if isinstance(label, dict):
        pid = label.get("prompt_id", label.get("id"))
        out = {"prompt_id": str(pid) if pid is not None else None}
        for k in ("query", "context"):
            if isinstance(label.get(k), str):
                out[k] = label[k]
        return out
    return {"error": f"label must be a prompt id or an object with prompt_id, got "
                     f"{type(label).__name__}"}


def strip_suffixes(text: str, suffixes: list[str]) -> str:
    """``text`` without trailing end-of-turn/padding tokens and whitespace."""
    changed = True
    while changed:
        changed = False
        text = text.rstrip()
        for s in suffixes:
            if text.endswith(s):
                text = text[: -len(s)]
                changed = True
    return text


def split_query(query: str, prompt: str) -> tuple[str, float] | None:
    """The response in an OpenRLHF ``query`` and the share of ``prompt`` (in characters) the
    policy saw; None when the query holds no recognisable part of the prompt.

    The query is ``decode(prompt_ids + response_ids)``. When the prompt was longer than the
    room left for it, OpenRLHF cut its token ids first: from the left in 0.9.1 and later
    (``prompt_token_ids[-max_prompt_length:]``, openrlhf/utils/agent.py), so the query is a
    suffix of the prompt followed by the response; from the right in 0.9.0 (the tokenizer's
    ``truncation=True``), so it is a prefix of the prompt followed by the response. A cut
    through a multi-byte character decodes to U+FFFD, and a SentencePiece tokenizer drops the
    first token's leading space; neither hides the cut."""
    if query.startswith(prompt):
        return query[len(prompt):], 1.0
    if not prompt:
        return None
    # Cut on the left: the prompt's last characters survive. The kept part ends at the first
    # place in the query after which the query's start (past any U+FFFD) is that suffix.
    tail = prompt[-_TAIL_CHARS:]
    garbled = len(query) - len(query.lstrip(_REPLACEMENT))
    for skip in range(garbled, -1, -1):
        end = query.find(tail, skip)
        while end != -1:
            end += len(tail)
            kept = end - skip
            if kept <= len(prompt) and query[skip:end] == prompt[len(prompt) - kept:]:
                return query[end:], kept / len(prompt)
            end = query.find(tail, end - len(tail) + 1)
    if tail in query:
        # the prompt's end is there but what precedes it differs from the prompt: a decoding
        # that changed the text (not a cut), where no split point can be trusted
        return None
    # Cut on the right (OpenRLHF 0.9.0): the prompt's first characters survive.
    shared = 0
    limit = min(len(query), len(prompt))
    while shared < limit and query[shared] == prompt[shared]:
        shared += 1
    if shared >= min(_MIN_HEAD_CHARS, len(prompt)):
        return query[shared:].lstrip(_REPLACEMENT), shared / len(prompt)
    return None


def openrlhf_items(req: OpenRLHFRequest, suffixes: list[str]) -> list[ScoreItem]:
    n = len(req.query)
    # An empty list is what OpenRLHF sends when the dataset has no such column: the same as
    # leaving it out, so each item says what it lacks instead of the batch being refused.
    if req.prompts == [] and n:
        req = req.model_copy(update={"prompts": None})
    if req.labels == [] and n:
        req = req.model_copy(update={"labels": None})
    for name in ("prompts", "labels"):
        got = getattr(req, name)
        if got is not None and len(got) != n:
            raise ProtocolError(f"'{name}' has {len(got)} entries but 'query' has {n}; "
                                "they must be parallel lists")
    items = []
    for i, query in enumerate(req.query):
        label = req.labels[i] if req.labels is not None else None
        fields = label_fields(label)
        prompt = req.prompts[i] if req.prompts is not None else None
        response = ""
        if req.prompts is None:
            fields["error"] = ("no 'prompts' in the request, so the response cannot be cut "
                               "from the query; use an OpenRLHF that sends prompts and labels, "
                               "or POST /score")
        elif not isinstance(prompt, str):
            fields["error"] = f"prompts[{i}] must be a string, got {type(prompt).__name__}"
        elif (split := split_query(query, prompt)) is None:
            fields["error"] = (f"query[{i}] holds no part of prompts[{i}], so its response "
                               "cannot be cut out; send the query as the prompt (or the part "
                               "of it the policy saw) followed by the response, special "
                               "tokens kept")
        else:
            response = strip_suffixes(split[0], suffixes)
            fields["prompt_seen"] = split[1]
        if not fields.get("prompt_id") and "context" not in fields and "error" not in fields:
            fields["error"] = (f"labels[{i}] names no registered prompt; set the dataset's "
                               "label to the prompt id (OpenRLHF --data.label_key)")
        items.append(ScoreItem(response=response, id=str(i), **fields))
    return items


def _short(reason: str | None) -> str | None:
    if reason is None or len(reason) <= _REASON_CHARS:
        return reason
    return reason[:_REASON_CHARS] + "…"


def openrlhf_reply(results: list[ItemResult]) -> dict[str, Any]:
    """``rewards`` and ``scores`` (the reward scaled to 0–1, for OpenRLHF's dynamic
    filtering) are numbers: the service filled failed items with the neutral reward (or the
    fixed fallback). ``extra_logs`` holds numbers only (OpenRLHF turns each into a tensor and
    logs its mean); ``items`` has the reasons."""
    rewards = [float(r.reward) if r.reward is not None else None for r in results]
    return {
        "rewards": rewards,
        "scores": [None if x is None else x / 10.0 for x in rewards],
        "extra_logs": {
            "longreward_mask": [float(r.mask) for r in results],
            "longreward_fallback": [float(r.fallback) for r in results],
            "longreward_dimensions_scored": [float(len(r.dimensions)) for r in results],
            # 1.0: the policy saw the whole prompt; less: OpenRLHF cut it (raise max_len)
            "longreward_prompt_seen": [r.prompt_seen if r.prompt_seen is not None else 0.0
                                       for r in results],
            # verdict-shaped or judge-addressed text in the answer (``reward.injection``)
            "longreward_flagged": [float(bool(r.flags)) for r in results],
            "longreward_flags": [float(len(r.flags)) for r in results],
            # the non-answer floor, and statements dropped as not grounded in the answer
            "longreward_floor": [float(r.floor is not None) for r in results],
            "longreward_dropped_statements": [float(r.dropped_statements) for r in results],
            # judge replies copied from the answer and re-asked (``judge.copied_reply``)
            "longreward_copy_reasks": [float(r.copy_reasks) for r in results],
        },
        "items": [{"id": r.id, "status": r.status, "mask": r.mask, "reason": _short(r.reason),
                   "fallback_basis": r.fallback_basis, "scores": r.scores,
                   "prompt_id": r.prompt_id, "prompt_seen": r.prompt_seen} for r in results],
    }


def slime_item(req: SlimeRequest, suffixes: list[str]) -> ScoreItem:
    fields = label_fields(req.label)
    if not fields.get("prompt_id") and "context" not in fields and "error" not in fields:
        fields["error"] = ("the sample's label names no registered prompt; set the label to "
                           "the prompt id")
    return ScoreItem(response=strip_suffixes(req.response, suffixes), **fields)


def slime_reply(result: ItemResult, plain: bool) -> Any:
    if plain:
        return result.reward
    return {"reward": result.reward, "mask": result.mask, "status": result.status,
            "reason": _short(result.reason), "fallback": result.fallback,
            "fallback_basis": result.fallback_basis, "scores": result.scores}
