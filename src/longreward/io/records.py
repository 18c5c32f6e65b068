"""Input records for scoring: one prompt (document + question) with one or more candidates.

Two input shapes are accepted (field names mappable with ``FieldMap``):
- flat rows: ``id, context, query, response`` (+ optional ``prompt_id``); rows of the same
  prompt are grouped by ``prompt_id``, or by identical (context, query) when it is absent;
- grouped rows: ``id, context, query, candidates`` where candidates are strings or objects
  with ``response`` (or ``text``/``answer``) and optional ``id``.
"""

from __future__ import annotations

import difflib
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

#: A document may be given as a list of strings (sentences or paragraphs, as arXiv and PubMed
#: datasets store it). It is joined with a blank line between items, so each item starts a
#: paragraph: the chunker prefers to cut there, and the document hash every row records is
#: that of the joined text, the same in every command.
DOCUMENT_JOIN = "\n\n"

#: Names other datasets give each field, for the suggestion when a field is missing.
_OTHER_NAMES: dict[str, tuple[str, ...]] = {
    "id": ("idx", "_id", "uid", "uuid", "qid", "key", "example_id", "sample_id"),
    "prompt_id": ("prompt_idx", "question_id", "group_id", "pid", "idx"),
    "context": ("document", "doc", "article", "article_text", "passage", "paper", "text",
                "content", "source", "input", "contexts"),
    "query": ("question", "instruction", "prompt", "input", "task", "q"),
    "response": ("answer", "output", "completion", "prediction", "generation", "text",
                 "model_output"),
    "candidates": ("responses", "answers", "outputs", "completions", "generations",
                   "samples"),
}


def missing_field(row: dict[str, Any], fields: FieldMap, role: str, label: str,
                  reason: str = "missing") -> RecordError:
    """The error for a row that lacks the field ``role`` (a ``FieldMap`` name): when the row
    has a field that other datasets use for it (``question`` for the query), the message
    names the flag that maps it."""
    name = getattr(fields, role)
    taken = set(fields.model_dump().values())
    keys = [k for k in row if isinstance(k, str) and k not in taken]
    guess = next((k for k in _OTHER_NAMES.get(role, ()) if k in keys), None)
    if guess is None:
        close = difflib.get_close_matches(name, keys, n=1, cutoff=0.75)
        guess = close[0] if close else None
    flag = "--field-" + role.replace("_", "-")
    if guess is not None:
        fix = (f"this row has {guess!r}: if that is it, pass {flag} {guess} (fields.{role}: "
               f"{guess} in a config file)")
    else:
        shown = ", ".join(repr(k) for k in list(row)[:8]) + (", ..." if len(row) > 8 else "")
        fix = f"the row's fields are {shown}; map yours with {flag} NAME"
    return RecordError(label, name, f"{reason}; {fix}")


def _req_str(row: dict[str, Any], fields: FieldMap, role: str, label: str) -> str:
    name = getattr(fields, role)
    value = row.get(name)
    if value is None:
        raise missing_field(row, fields, role, label)
    if not isinstance(value, str):
        raise RecordError(label, name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RecordError(label, name, "is empty")
    return value


def document_text(value: Any, label: str, name: str) -> str:
    """A document as one text: a string, or a list of strings joined by ``DOCUMENT_JOIN``.
    Raises ``RecordError`` for anything else, or an empty document."""
    if isinstance(value, list):
        bad = next((i for i, item in enumerate(value) if not isinstance(item, str)), None)
        if bad is not None:
            raise RecordError(label, f"{name}[{bad}]", "a document given as a list must hold "
                              f"strings only, got {type(value[bad]).__name__}")
        value = DOCUMENT_JOIN.join(value)
    elif not isinstance(value, str):
        raise RecordError(label, name, "must be a string, or a list of strings (sentences or "
                          f"paragraphs), got {type(value).__name__}")
    if not value.strip():
        raise RecordError(label, name, "is empty")
    return value


def _req_document(row: dict[str, Any], fields: FieldMap, label: str) -> str:
    if row.get(fields.context) is None:
        raise missing_field(row, fields, "context", label)
    return document_text(row[fields.context], label, fields.context)


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
            context = _req_document(row, f, label)
            query = _req_str(row, f, "query", label)
        except RecordError as exc:
            yield exc
            continue
        if f.candidates in row:
            yield from _grouped(row, label, context, query, f, seen_ids)
            continue
        rid = _str_id(row.get(f.id))
        if rid is None:
            yield (missing_field(row, f, "id", label) if row.get(f.id) is None
                   else RecordError(label, f.id, _BAD_ID))
            continue
        if rid in seen_ids:
            yield RecordError(label, f.id, f"duplicate id {rid!r}; ids must be unique")
            continue
        try:
            response = _req_str(row, f, "response", label)
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
        yield missing_field(row, f, "id", label)
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
                raise (missing_field(item, f, "id", label) if item.get(f.id) is None
                       else RecordError(label, f.id, _BAD_ID))
            ctx = _req_document(item, f, label)
            query = _req_str(item, f, "query", label)
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
