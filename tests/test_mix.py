"""``longreward mix``: ratio, seed, provenance, formats and sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longreward.preference.formats import PairExample, pair_to_row
from longreward.preference.mix import mix_pairs


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def long_pairs(path: Path, n: int = 10) -> Path:
    rows = []
    for i in range(n):
        p = PairExample(prompt=[{"role": "user", "content": f"long doc {i}\n\nQ{i}?"}],
                        chosen=f"good {i}", rejected=f"bad {i}",
                        meta={"prompt_id": f"L{i}", "margin": 2.0 + i})
        rows.append(pair_to_row(p, "trl"))
    return write_jsonl(path, rows)


def short_pairs(path: Path, n: int = 30) -> Path:
    # LLaMA-Factory sharegpt, a different format from the long side
    rows = [{"conversations": [{"from": "human", "value": f"short q{i}"}],
             "chosen": {"from": "gpt", "value": f"yes {i}"},
             "rejected": {"from": "gpt", "value": f"no {i}"}, "source": "web"} for i in range(n)]
    rows.append({"conversations": [], "chosen": "x", "rejected": "y"})  # bad: no turns
    return write_jsonl(path, rows)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_ratio_provenance_and_format(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    s = mix_pairs(long_pairs(tmp_path / "long.jsonl"), short_pairs(tmp_path / "short.jsonl"),
                  tmp_path / "mix.jsonl", ratio=1.5, seed=3)
    assert (s.long, s.short_available, s.short_used, s.total, s.shortfall) == (10, 30, 15, 25, 0)
    assert len(s.errors) == 1 and "conversations" in str(s.errors[0])
    rows = read(tmp_path / "mix.jsonl")
    assert [r["provenance"] for r in rows].count("short") == 15
    assert {r["provenance_source"] for r in rows} == {str(tmp_path / "long.jsonl"), str(tmp_path / "short.jsonl")}
    # everything in the long file's format (TRL conversational)
    short_row = next(r for r in rows if r["provenance"] == "short")
    assert short_row["chosen"][0]["role"] == "assistant" and short_row["source"] == "web"
    assert short_row["margin"] is None  # long-only columns are null on short rows
    # shuffled, not long-then-short
    assert [r["provenance"] for r in rows[:10]] != ["long"] * 10
    for f, b in (("mix.jsonl", "json"), ("mix.parquet", "parquet")):
        ds = datasets.load_dataset(b, data_files=str(tmp_path / f), split="train")
        assert len(ds) == 25 and {"prompt", "chosen", "rejected", "provenance"} <= set(ds.column_names)


def test_same_seed_same_file_other_seed_other_order(tmp_path: Path) -> None:
    lp, sp = long_pairs(tmp_path / "l.jsonl"), short_pairs(tmp_path / "s.jsonl")
    mix_pairs(lp, sp, tmp_path / "a.jsonl", ratio=1, seed=1)
    mix_pairs(lp, sp, tmp_path / "b.jsonl", ratio=1, seed=1)
    mix_pairs(lp, sp, tmp_path / "c.jsonl", ratio=1, seed=2)
    assert read(tmp_path / "a.jsonl") == read(tmp_path / "b.jsonl")
    assert read(tmp_path / "a.jsonl") != read(tmp_path / "c.jsonl")


def test_shortfall_is_reported_not_repeated(tmp_path: Path) -> None:
    s = mix_pairs(long_pairs(tmp_path / "l.jsonl"), short_pairs(tmp_path / "s.jsonl", n=4),
                  tmp_path / "m.jsonl", ratio=2, fmt="trl_standard")
    assert (s.short_used, s.shortfall, s.total) == (4, 16, 14)
    rows = read(tmp_path / "m.jsonl")
    assert all(isinstance(r["prompt"], str) for r in rows)


def test_short_side_from_a_saved_hf_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([
        {"prompt": f"q{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(8)
    ])
    ds.save_to_disk(str(tmp_path / "short_ds"))
    s = mix_pairs(long_pairs(tmp_path / "l.jsonl", n=4), str(tmp_path / "short_ds"),
                  tmp_path / "m.jsonl", ratio=0.5, fmt="openrlhf")
    assert (s.short_used, s.total) == (2, 6)


def test_mix_of_a_mix_keeps_provenance(tmp_path: Path) -> None:
    lp, sp = long_pairs(tmp_path / "l.jsonl"), short_pairs(tmp_path / "s.jsonl")
    mix_pairs(lp, sp, tmp_path / "m1.jsonl", ratio=1)
    mix_pairs(tmp_path / "m1.jsonl", sp, tmp_path / "m2.jsonl", ratio=0.1)
    rows = read(tmp_path / "m2.jsonl")
    assert [r["provenance"] for r in rows].count("short") == 10 + 2


def test_mix_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from longreward.cli import app

    r = CliRunner().invoke(app, ["mix", str(long_pairs(tmp_path / "l.jsonl")),
                                 str(short_pairs(tmp_path / "s.jsonl")), "-o", str(tmp_path / "m.jsonl"),
                                 "--ratio", "0.5", "--format", "sharegpt"])
    assert r.exit_code == 1, r.output  # the bad short row is reported
    rows = read(tmp_path / "m.jsonl")
    assert len(rows) == 15 and all("conversations" in row for row in rows)
    assert (tmp_path / "m.jsonl.rejected.jsonl").exists()


def test_mix_cli_names_a_missing_or_unloadable_short_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    from typer.testing import CliRunner

    from longreward.cli import app

    lp = str(long_pairs(tmp_path / "l.jsonl"))
    # A misspelt file is not looked up on the Hub: the message names the file.
    from longreward.errors import InputFileError

    with pytest.raises(InputFileError, match="shrot.jsonl: no such file"):
        mix_pairs(lp, tmp_path / "shrot.jsonl", tmp_path / "m.jsonl")
    r = CliRunner().invoke(app, ["mix", lp, str(tmp_path / "shrot.jsonl"), "-o", str(tmp_path / "m.jsonl")])
    assert r.exit_code == 2 and "no such file" in " ".join(r.output.split())

    def unreachable(*_a: object, **_k: object) -> None:
        raise ConnectionError("Couldn't reach 'org/prefs' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    r = CliRunner().invoke(app, ["mix", lp, "org/prefs", "-o", str(tmp_path / "m.jsonl")])
    assert r.exit_code == 2, r.output
    assert "cannot load 'org/prefs'" in " ".join(r.output.split())
    assert not (tmp_path / "m.jsonl").exists()
