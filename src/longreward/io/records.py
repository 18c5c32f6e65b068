"""Input records for scoring: one prompt (document + question) with one or more candidates.

Two input shapes are accepted (field names mappable with ``FieldMap``):
- flat rows: ``id, context, query, response`` (+ optional ``prompt_id``); rows of the same
  prompt are grouped by ``prompt_id``, or by identical (context, query) when it is absent;
- grouped rows: ``id, context, query, candidates`` where candidates are strings or objects
  with ``response`` (or ``text``/``answer``) and optional ``id``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import RecordError
from .files import iter_rows


class FieldMap(BaseModel):
    """Names of the input fields, for data that spells them differently."""

    model_config = ConfigDict(extra="forbid")

    id: str = "id"
    prompt_id: str = "prompt_id"
    context: str = "context"
    query: str = "query"
    response: str = "response"
    candidates: str = "candidates"


@dataclass
class Candidate:
    id: str
    response: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptRecord:
    prompt_id: str
    context: str
    query: str
    candidates: list[Candidate]
    label: str = ""  # where it came from, for error messages

    @property
    def document_key(self) -> str:
        return document_key(self.context)


def document_key(text: str) -> str:
    """A short, stable hash of a document: output rows record it, so a resumed run can tell
    that the document a row was made from has changed."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


_RESPONSE_KEYS = ("response", "text", "answer", "content")


def _req_str(row: dict[str, Any], name: str, label: str, *, allow_empty: bool = False) -> str:
    value = row.get(name)
    if value is None:
        raise RecordError(label, name, "missing (if your data names it differently, map it "
                          "with the --field-* options)")
    if not isinstance(value, str):
        raise RecordError(label, name, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RecordError(label, name, "is empty")
    return value


def _str_id(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return None


def group_records(
    rows: Iterable[tuple[str, dict[str, Any] | RecordError]],
    fields: FieldMap | None = None,
    prompts: dict[str, dict[str, Any]] | None = None,
) -> Iterator[PromptRecord | RecordError]:
    """Turn raw rows into ``PromptRecord``s. Bad rows (and bad candidates) come out as
    ``RecordError`` and never stop the others. Flat rows are grouped, so their records are
    yielded after all rows were read; grouped rows are yielded as they come.

    ``prompts`` (from :func:`load_prompts`) fills in the document and question of rows that
    carry only a ``prompt_id``, so candidates need not repeat a long document N times."""
    f = fields or FieldMap()
    flat: dict[str, PromptRecord] = {}
    seen_ids: set[str] = set()
    for label, row in rows:
        if isinstance(row, RecordError):
            yield row
            continue
        if prompts is not None and f.context not in row:
            pid = _str_id(row.get(f.prompt_id))
            src = prompts.get(pid) if pid is not None else None
            if src is None:
                yield RecordError(label, f.prompt_id, "no document: the row has no "
                                  f"'{f.context}' and its prompt_id is not in the prompts file")
                continue
            row = {**row, f.context: src["context"], f.query: row.get(f.query, src["query"])}
        elif f.context not in row and _str_id(row.get(f.prompt_id)) is not None:
            yield RecordError(label, f.context, "missing; this row has a prompt_id, so pass the "
                              "prompts file with --prompts to join its document")
            continue
        try:
            context = _req_str(row, f.context, label)
            query = _req_str(row, f.query, label)
        except RecordError as exc:
            yield exc
            continue
        if f.candidates in row:
            yield from _grouped(row, label, context, query, f, seen_ids)
            continue
        rid = _str_id(row.get(f.id))
        if rid is None:
            yield RecordError(label, f.id, "missing or not a string/integer id")
            continue
        if rid in seen_ids:
            yield RecordError(label, f.id, f"duplicate id {rid!r}; ids must be unique")
            continue
        try:
            response = _req_str(row, f.response, label)
        except RecordError as exc:
            yield exc
            continue
        seen_ids.add(rid)
        pid = _str_id(row.get(f.prompt_id)) or "p-" + hashlib.sha256(
            (context + "\x00" + query).encode("utf-8")).hexdigest()[:16]
        rec = flat.get(pid)
        if rec is None:
            flat[pid] = rec = PromptRecord(pid, context, query, [], label)
        elif rec.context != context or rec.query != query:
            yield RecordError(label, f.prompt_id, f"prompt_id {pid!r} was used with a different "
                              "context or query")
            continue
        extra = {k: v for k, v in row.items()
                 if k not in {f.id, f.prompt_id, f.context, f.query, f.response}}
        rec.candidates.append(Candidate(rid, response, extra))
    yield from flat.values()


def _grouped(row: dict[str, Any], label: str, context: str, query: str, f: FieldMap,
             seen_ids: set[str]) -> Iterator[PromptRecord | RecordError]:
    pid = _str_id(row.get(f.id)) or _str_id(row.get(f.prompt_id))
    if pid is None:
        yield RecordError(label, f.id, "missing or not a string/integer id")
        return
    raw = row[f.candidates]
    if not isinstance(raw, list) or not raw:
        yield RecordError(label, f.candidates, "must be a non-empty list")
        return
    cands: list[Candidate] = []
    for k, item in enumerate(raw):
        where = f"{f.candidates}[{k}]"
        extra: dict[str, Any] = {}
        if isinstance(item, str):
            cid, text = f"{pid}-{k}", item
        elif isinstance(item, dict):
            cid = _str_id(item.get("id")) or f"{pid}-{k}"
            text = next((item[key] for key in (f.response, *_RESPONSE_KEYS) if key in item), None)
            extra = {key: v for key, v in item.items() if key not in {"id", f.response,
                                                                        *_RESPONSE_KEYS}}
        else:
            yield RecordError(label, where, "must be a string or an object with 'response'")
            continue
        if not isinstance(text, str) or not text.strip():
            yield RecordError(f"{label} candidate {cid}", where, "empty or missing response")
            continue
        if cid in seen_ids:
            yield RecordError(label, where, f"duplicate candidate id {cid!r}")
            continue
        seen_ids.add(cid)
        cands.append(Candidate(cid, text, extra))
    if cands:
        yield PromptRecord(pid, context, query, cands, label)


def load_prompts(
    path: str | Path,
    *,
    field_id: str = "id",
    field_context: str = "context",
    field_query: str = "query",
    errors: list[RecordError] | None = None,
) -> dict[str, dict[str, Any]]:
    """A prompts file (rows of id, context, query) keyed by id, as ``{"context", "query"}``;
    bad rows go to ``errors``. Lets candidate rows that carry only ``prompt_id`` be joined
    back to their document (``score --prompts``, ``pairs --prompts``)."""
    out: dict[str, dict[str, Any]] = {}
    for label, item in iter_rows(path, id_field=field_id):
        if isinstance(item, RecordError):
            if errors is not None:
                errors.append(item)
            continue
        try:
            pid = item.get(field_id)
            if pid is None or isinstance(pid, bool) or str(pid) == "":
                raise RecordError(label, field_id, "missing id")
            ctx, query = item.get(field_context), item.get(field_query)
            if not isinstance(ctx, str):
                raise RecordError(label, field_context, "missing or not a string")
            if not isinstance(query, str) or not query.strip():
                raise RecordError(label, field_query, "missing or empty")
        except RecordError as exc:
            if errors is not None:
                errors.append(exc)
            continue
        out[str(pid)] = {"context": ctx, "query": query}
    return out
