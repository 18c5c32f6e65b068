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
    """An id as text; None for a missing, empty or whitespace-only id or one of another type
    (an empty id cannot name a record in an error, a resume or a join)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    return None


_BAD_ID = "empty or not a string/integer id"


def _given_id(value: Any) -> str | None:
    """An optional id: ``None`` when absent (or null), ``""`` when given but empty, blank or
    of another type (the caller rejects the record: a default id in its place would split a
    prompt's answers apart or rename an answer without a word), else the id."""
    if value is None:
        return None
    return _str_id(value) or ""


def group_records(
    rows: Iterable[tuple[str, dict[str, Any] | RecordError]],
    fields: FieldMap | None = None,
    prompts: dict[str, Prompt] | None = None,
    rejected_prompts: Iterable[RecordError] = (),
) -> Iterator[PromptRecord | RecordError]:
    """Turn raw rows into ``PromptRecord``s. Bad rows (and bad candidates) come out as
    ``RecordError`` and never stop the others. Flat rows are grouped, so their records are
    yielded after all rows were read; grouped rows are yielded as they come.

    ``prompts`` (from :func:`read_prompts`) fills in the document and question of rows that
    carry only a ``prompt_id``, so candidates need not repeat a long document N times. A row
    that records the hash of the document it was sampled from (``document``) must match the
    joined document: a prompts file edited since, or a repeated prompt id, would otherwise
    have the answer judged against another document. ``rejected_prompts`` (the errors of
    :func:`read_prompts`) let a row whose prompt was rejected there say why."""
    f = fields or FieldMap()
    why_not = {e.record_id: e for e in rejected_prompts if e.record_id is not None}
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
                cause = why_not.get(pid) if pid is not None else None
                yield RecordError(label, f.prompt_id, f"no document: the row has no "
                                  f"'{f.context}', and its prompt_id " + (
                                      f"was rejected in the prompts file ({cause})" if cause
                                      else "is not in the prompts file"))
                continue
            recorded = row.get("document")
            if isinstance(recorded, str) and recorded and recorded != src.document_key:
                yield RecordError(label, "document", f"was made from another document than "
                                  f"prompt {pid!r} of the prompts file holds now (hash "
                                  f"{recorded} vs {src.document_key}); pass the prompts file "
                                  "it was sampled from, or sample it again")
                continue
            row = {**row, f.context: src.context, f.query: row.get(f.query, src.query)}
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
            yield RecordError(label, f.id, "missing, " + _BAD_ID)
            continue
        if rid in seen_ids:
            yield RecordError(label, f.id, f"duplicate id {rid!r}; ids must be unique")
            continue
        try:
            response = _req_str(row, f.response, label)
        except RecordError as exc:
            yield exc
            continue
        given = _given_id(row.get(f.prompt_id))
        if given == "":
            yield RecordError(label, f.prompt_id, _BAD_ID)
            continue
        seen_ids.add(rid)
        pid = given or "p-" + hashlib.sha256(
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
    given = _given_id(row.get(f.id))
    if given == "":
        yield RecordError(label, f.id, _BAD_ID)
        return
    pid = given or _str_id(row.get(f.prompt_id))
    if pid is None:
        yield RecordError(label, f.id, "missing, " + _BAD_ID)
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
            given = _given_id(item.get("id"))
            if given == "":
                yield RecordError(label, f"{where}.id", _BAD_ID)
                continue
            cid = given or f"{pid}-{k}"
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


@dataclass
class Prompt:
    """One row of a prompts file: a document and a question, named by ``id``."""

    id: str
    context: str
    query: str
    label: str = ""

    @property
    def document_key(self) -> str:
        return document_key(self.context)


def read_prompts(path: str | Path, fields: FieldMap | None = None
                 ) -> tuple[dict[str, Prompt], list[RecordError]]:
    """The one reader of prompts files (rows of id, context, query), for every stage: the
    prompts in file order by id, and the rejected rows.

    A repeated id is never resolved by position: rows that repeat an id with the same
    document and question keep the first and reject the repeats; rows that repeat it with a
    different document or question are all rejected, since no one can tell which one the id's
    answers belong to."""
    f = fields or FieldMap()
    out: dict[str, Prompt] = {}
    errors: list[RecordError] = []
    conflicting: dict[str, str] = {}  # id -> label of its first row
    for label, item in iter_rows(path, id_field=f.id):
        if isinstance(item, RecordError):
            errors.append(item)
            continue
        try:
            pid = _str_id(item.get(f.id))
            if pid is None:
                raise RecordError(label, f.id, "missing, empty or not a string/integer id "
                                  "(map it with --field-id)")
            ctx = _req_str(item, f.context, label)
            query = _req_str(item, f.query, label)
        except RecordError as exc:
            errors.append(exc)
            continue
        first = out.get(pid)
        if pid in conflicting:
            errors.append(RecordError(label, f.id, f"id {pid!r} is used by rows with different "
                                      f"documents or questions (first: {conflicting[pid]}); "
                                      "give each prompt its own id", record_id=pid))
        elif first is None:
            out[pid] = Prompt(pid, ctx, query, label)
        elif (first.context, first.query) == (ctx, query):
            errors.append(RecordError(label, f.id, f"repeats prompt {pid!r} of {first.label}; "
                                      "the first row is used, remove the repeat"))
        else:
            del out[pid]
            conflicting[pid] = first.label
            for where in (first.label, label):
                errors.append(RecordError(where, f.id, f"id {pid!r} is used by rows with "
                                          "different documents or questions; give each prompt "
                                          "its own id", record_id=pid))
    return out, errors
