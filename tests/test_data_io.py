"""Input grouping and the resumable writer."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from longreward.errors import RecordError
from longreward.io.files import ResumableJsonlWriter, iter_rows, write_rows
from longreward.io.records import FieldMap, PromptRecord, group_records


def test_flat_rows_group_by_prompt_id_or_identical_context(tmp_path):
    rows = [
        ("r1", {"id": "a", "prompt_id": "p", "context": "D", "query": "Q", "response": "x"}),
        ("r2", {"id": "b", "prompt_id": "p", "context": "D", "query": "Q", "response": "y"}),
        ("r3", {"id": "c", "context": "E", "query": "Q", "response": "z"}),
        ("r4", {"id": "d", "context": "E", "query": "Q", "response": "w"}),
        ("r5", {"id": "a", "context": "E", "query": "Q", "response": "dup"}),
    ]
    out = list(group_records(rows))
    recs = [r for r in out if isinstance(r, PromptRecord)]
    errs = [r for r in out if isinstance(r, RecordError)]
    assert [len(r.candidates) for r in recs] == [2, 2]
    assert len(errs) == 1 and "duplicate id" in str(errs[0]) and errs[0].record == "r5"


def test_grouped_rows_and_field_mapping():
    rows = [("r1", {"doc_id": 7, "text": "D", "question": "Q",
                    "answers": ["one", {"id": "x", "response": "two"}, {"response": " "}, 3]})]
    fields = FieldMap(id="doc_id", context="text", query="question", candidates="answers")
    out = list(group_records(rows, fields))
    recs = [r for r in out if isinstance(r, PromptRecord)]
    errs = [r for r in out if isinstance(r, RecordError)]
    assert [c.id for c in recs[0].candidates] == ["7-0", "x"]
    assert {e.field for e in errs} == {"answers[2]", "answers[3]"}


def test_readers_name_the_record(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_bytes(b'{"id": 1}\n[1, 2]\n{bad\n\xff\xfe\n')
    items = list(iter_rows(p))
    assert items[0][1] == {"id": 1} and items[0][0] == "in.jsonl:1 (id 1)"
    assert all(isinstance(x, RecordError) for _, x in items[1:])
    assert "in.jsonl:3" in str(items[2][1]) and "UTF-8" in str(items[3][1])
    pq.write_table(pa.Table.from_pylist([{"id": "a", "v": 1}, {"id": "b", "v": 2}]),
                   tmp_path / "t.parquet")
    assert [r["id"] for _, r in iter_rows(tmp_path / "t.parquet")] == ["a", "b"]
    (tmp_path / "t.json").write_text(json.dumps({"data": [{"id": "z"}]}))
    assert [r["id"] for _, r in iter_rows(tmp_path / "t.json")] == ["z"]
    write_rows(tmp_path / "o.parquet", [{"id": "q"}])
    assert pq.read_table(tmp_path / "o.parquet").to_pylist() == [{"id": "q"}]


def test_writer_repairs_a_torn_line_and_skips_written_ids(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "tor')
    with ResumableJsonlWriter(path) as w:
        assert w.written == {"a", "b"}
        assert not w.write({"id": "a"})
        assert w.write({"id": "c"})
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]
