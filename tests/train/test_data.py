"""Pair reading, tokenisation and the over-long prompt policy."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from lr_train_helpers import toy_rows

from longreward.train.data import build_dataset, cut_middle


def test_cut_middle_keeps_head_and_tail():
    assert cut_middle(list(range(10)), 4) == [0, 1, 2, 7, 8, 9]
    assert cut_middle(list(range(10)), 0) == list(range(10))


def test_overlong_prompt_is_cut_in_the_middle_of_the_document(tmp_path, tokenizer):
    doc = " ".join(["w10"] * 150 + ["w20"] * 150)
    row = {"prompt": [{"role": "system", "content": "w160 w161"},
                      {"role": "user", "content": doc + " ? w177 w178"}],
           "chosen": "w3 w4", "rejected": "w5 w6 w7"}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    pairs, report = build_dataset(path, tokenizer, max_length=120)
    assert report.n_pairs == 1 and report.n_truncated == 1
    p = pairs[0]
    assert len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) <= 120
    assert report.n_truncated_tokens == p.truncated_tokens > 0
    text = tokenizer.decode(p.prompt_ids)
    assert text.startswith("<bos> <|system|> w160 w161 <|user|> w10 w10")  # head kept
    assert "w20 w20 ? w177 w178 <|assistant|>" in text  # the question at the tail survives
    kept = text.count("w10") + text.count("w20")
    assert 300 - kept == p.truncated_tokens  # only document tokens were removed
    # cut in the middle of the message: head = tail (the tail also holds "? w177 w178")
    assert abs(text.count("w10") - (text.count("w20") + 3)) <= 1
    assert p.chosen_ids[-1] == tokenizer.eos_token_id


def test_short_prompt_is_untouched(pairs_file, tokenizer):
    pairs, report = build_dataset(pairs_file, tokenizer, max_length=4096)
    assert report.n_pairs == 4 and report.n_truncated == 0 and not report.rejected


def test_malformed_rows_are_reported_by_record(tmp_path, tokenizer):
    good = toy_rows(1)[0]
    lines = [json.dumps(good), "{not json", json.dumps({"prompt": "w1 w2", "chosen": "w3"}),
             json.dumps({"prompt": "w1", "chosen": "w3", "rejected": "w3"}),
             json.dumps({**good, "chosen": " ".join(["w1"] * 200)})]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    pairs, report = build_dataset(path, tokenizer, max_length=150)
    assert report.n_rows == 5 and report.n_pairs == 1
    by_record = dict(report.rejected)
    assert set(by_record) == {"bad.jsonl:2", "bad.jsonl:3", "bad.jsonl:4", "bad.jsonl:5"}
    assert "malformed JSON" in by_record["bad.jsonl:2"]
    assert "cannot tell the pair format" in by_record["bad.jsonl:3"]
    assert "identical" in by_record["bad.jsonl:4"]
    assert "max_length=150" in by_record["bad.jsonl:5"]


def test_parquet_and_openrlhf_keys(tmp_path, tokenizer):
    from longreward.preference.formats import PairKeys

    rows = [{"q": "w1 w2 w3", "good": "w4", "bad": "w5 w6"}]
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    pairs, report = build_dataset(path, tokenizer, 512, fmt="openrlhf",
                                  keys=PairKeys("q", "good", "bad"))
    assert report.n_pairs == 1
    assert tokenizer.decode(pairs[0].rejected_ids) == "w5 w6 <eos>"


def test_pairs_longer_than_the_model_window_are_warned_about_with_the_fix():
    from longreward.train.data import TokenizedPair
    from longreward.train.trainer import window_warning

    def pair(prompt: int, chosen: int, rejected: int) -> TokenizedPair:
        return TokenizedPair([1] * prompt, [2] * chosen, [3] * rejected, record="r")

    pairs = [pair(100, 20, 30), pair(8000, 300, 100), pair(10, 1, 1)]
    assert window_warning({"max_position_embeddings": 8300}, pairs) is None  # 8000 + 300 fits
    text = window_warning({"max_position_embeddings": 8192}, pairs)
    assert text is not None and "1 pair(s)" in text and "8,300 tokens" in text
    assert "--max-length 8192" in text
    assert window_warning({}, pairs) is None  # no stated window: nothing to say
