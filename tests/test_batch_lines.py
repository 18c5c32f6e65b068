"""The batch file format both ways: result lines as the OpenAI Batch API writes them (output
and error files) and as ``vllm run-batch`` writes them (one file, errors with a status and no
body), classified like the same reply online; and rounds cut at the request and byte limits."""

from __future__ import annotations

import json

import pytest

from longreward.errors import UsageError
from longreward.judge import ContextTooLongError, PermanentError, RetryableError
from longreward.judge.batch import BatchOptions, parse_result
from longreward.judge.batch._lines import request_line, split

REPLY = {"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                      "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def test_a_reply_line_of_openai_or_vllm():
    for line in ({"id": "batch_req_1", "custom_id": "r1-a", "error": None,
                  "response": {"status_code": 200, "request_id": "x", "body": REPLY}},
                 {"id": "vllm-1", "custom_id": "r1-a", "error": None,
                  "response": {"status_code": 200, "request_id": "vllm-batch-1", "body": REPLY}}):
        got = parse_result(line)
        assert got.ok and got.custom_id == "r1-a" and got.reply() == REPLY


@pytest.mark.parametrize(("line", "kind", "text"), [
    # OpenAI error file: a request the batch did not run
    ({"custom_id": "c", "response": None,
      "error": {"code": "batch_expired", "message": "not run before the window closed"}},
     RetryableError, "not run before the window closed"),
    # OpenAI: a request that failed with a status (error file, with the server's body)
    ({"custom_id": "c", "error": None, "response": {"status_code": 400, "body": {"error": {
        "message": "This model's maximum context length is 8192 tokens", "code": None}}}},
     ContextTooLongError, "maximum context length"),
    ({"custom_id": "c", "error": None, "response": {"status_code": 500, "body": {"error": {
        "message": "The server had an error"}}}}, RetryableError, "server had an error"),
    ({"custom_id": "c", "error": None, "response": {"status_code": 429, "body": {"error": {
        "message": "slow down"}}}}, RetryableError, "slow down"),
    # vllm run-batch: a status without a body, the message as text ...
    ({"id": "vllm-2", "custom_id": "c", "response": {"status_code": 400, "request_id": "r",
                                                      "body": None},
      "error": "Request must not be sent in stream mode"}, PermanentError, "stream mode"),
    # ... or as its ErrorResponse object
    ({"id": "vllm-3", "custom_id": "c", "response": {"status_code": 400, "request_id": "r",
                                                      "body": None},
      "error": {"error": {"message": "bad schema", "type": "BadRequestError", "code": 400}}},
     PermanentError, "bad schema"),
    # an error code nobody can fix by sending again
    ({"custom_id": "c", "response": None, "error": {"code": "invalid_request",
                                                    "message": "model not found"}},
     PermanentError, "model not found"),
])
def test_error_lines_are_classified_as_online_replies(line, kind, text):
    got = parse_result(line)
    assert not got.ok
    error = got.error(structured=True)
    assert type(error) is kind and text in str(error)


def test_what_is_not_a_result_line():
    for bad in ({"response": {}}, [], "text", {"custom_id": 3}, {"custom_id": "c"}):
        with pytest.raises(ValueError):
            parse_result(bad)
    # a shard's request line (ingest pointed at the run directory) is no failed result
    request = json.loads(request_line("r1-k", "/v1/chat/completions", {"messages": []}))
    with pytest.raises(ValueError, match="request line"):
        parse_result(request)


def test_split_keeps_order_and_both_limits():
    lines = [(f"c{i}", request_line(f"c{i}", "/v1/chat/completions",
                                    {"messages": [{"role": "user", "content": "x" * i}]}))
             for i in range(40)]
    parts = split(lines, max_requests=7, max_bytes=900)
    assert [cid for part in parts for cid, _ in part] == [cid for cid, _ in lines]
    assert all(len(p) <= 7 and sum(len(x) for _, x in p) <= 900 for p in parts)
    assert json.loads(lines[3][1]) == {"custom_id": "c3", "method": "POST",
                                       "url": "/v1/chat/completions",
                                       "body": {"messages": [{"role": "user", "content": "xxx"}]}}
    with pytest.raises(UsageError, match="above the batch size limit"):
        split(lines, max_requests=7, max_bytes=100)


def test_the_batch_api_limits_are_the_defaults_and_the_ceilings():
    opts = BatchOptions(mode="openai")
    assert (opts.max_requests, opts.max_bytes) == (50_000, 200_000_000)
    with pytest.raises(ValueError):
        BatchOptions(mode="openai", max_requests=50_001)
    with pytest.raises(ValueError):
        BatchOptions(mode="openai", max_bytes=200_000_001)
