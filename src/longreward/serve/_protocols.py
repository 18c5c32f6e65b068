"""The wire formats trainers already speak, turned into ``ScoreItem``s and back.

- native ``POST /score``: ``{"items": [{id?, prompt_id | context, query?, response}]}``
- OpenRLHF ``POST /get_reward``: ``{"query": [...], "prompts": [...], "labels": [...]}``,
  where each query is the prompt and the response decoded as one string (chat-template
  tokens included); the answer is the query minus its prompt. OpenRLHF logs every
  ``extra_logs`` value as a tensor, so those are numbers only.
- slime ``POST /slime``: ``{"prompt", "response", "label"}`` per sample → a dict with a
  ``reward`` key (slime ``--reward-key reward``), or a bare number with ``?format=number``.

Labels name a registered prompt by id; a label may also be an object (or its JSON text)
with ``prompt_id`` and optionally ``query``/``context``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import LongRewardError
from ._service import ItemResult, ScoreItem

#: longest reason text copied into an OpenRLHF/slime reply (the native reply has it whole)
_REASON_CHARS = 500


class NativeItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    prompt_id: str | None = None
    context: str | None = None
    query: str | None = None
    response: str


class NativeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[NativeItem]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    context: str = Field(min_length=1)
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
                      context=it.context, query=it.query) for it in req.items]


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
        if req.prompts is None:
            fields["error"] = ("no 'prompts' in the request, so the response cannot be cut "
                               "from the query; use an OpenRLHF that sends prompts and labels, "
                               "or POST /score")
            response = ""
        elif not isinstance(prompt, str):
            fields["error"] = f"prompts[{i}] must be a string, got {type(prompt).__name__}"
            response = ""
        elif not query.startswith(prompt):
            fields["error"] = (f"query[{i}] does not start with prompts[{i}], so its response "
                               "cannot be cut out; send the query exactly as the prompt "
                               "followed by the response (same decoding, special tokens kept)")
            response = ""
        else:
            response = strip_suffixes(query[len(prompt):], suffixes)
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
    filtering) hold null where there is no reward and no fallback; ``extra_logs`` holds
    numbers only (OpenRLHF turns each into a tensor); ``items`` has the reasons."""
    rewards = [r.reward for r in results]
    return {
        "rewards": rewards,
        "scores": [None if x is None else x / 10.0 for x in rewards],
        "extra_logs": {
            "longreward_mask": [float(r.mask) for r in results],
            "longreward_fallback": [float(r.fallback) for r in results],
            "longreward_dimensions_scored": [float(len(r.dimensions)) for r in results],
            # verdict-shaped or judge-addressed text in the answer (``reward.injection``)
            "longreward_flagged": [float(bool(r.flags)) for r in results],
            "longreward_flags": [float(len(r.flags)) for r in results],
        },
        "items": [{"id": r.id, "status": r.status, "mask": r.mask, "reason": _short(r.reason),
                   "scores": r.scores, "prompt_id": r.prompt_id} for r in results],
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
            "scores": result.scores}
