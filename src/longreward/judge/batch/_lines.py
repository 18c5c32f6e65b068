"""The OpenAI batch file format, both ways.

A request line is ``{"custom_id", "method": "POST", "url", "body"}``; the body is exactly the
request the online client would send. A result line (OpenAI's output and error files, ``vllm
run-batch``'s output, what a Ray Data pipeline writes) is ``{"custom_id", "response":
{"status_code", "body"}, "error"}``: a reply when the status is 2xx and the body is an object,
otherwise an error with the server's message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UsageError
from .._types import ModelError, PermanentError, RetryableError
from ..providers.openai_compatible import classify_error

#: error codes of batch lines that another try can fix (the rest are the request's own fault)
RETRYABLE_CODES = {
    "batch_expired": None, "batch_cancelled": None, "batch_failed": None,
    "missing_from_batch": None, "server_error": 500, "internal_error": 500,
    "rate_limit_exceeded": 429, "timeout": 408, "request_timeout": 408,
}


def custom_id(round_no: int, key: str) -> str:
    """One issue of a request: the round it goes out in and its call-cache key."""
    return f"r{round_no}-{key}"


def request_line(cid: str, url: str, body: dict[str, Any]) -> bytes:
    line = {"custom_id": cid, "method": "POST", "url": url, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def split(lines: list[tuple[str, bytes]], max_requests: int, max_bytes: int
          ) -> list[list[tuple[str, bytes]]]:
    """Lines in order, cut into parts of at most ``max_requests`` lines and ``max_bytes``."""
    parts: list[list[tuple[str, bytes]]] = []
    size = 0
    for cid, line in lines:
        if len(line) > max_bytes:
            raise UsageError(f"one request ({cid}) is {len(line):,} bytes, above the batch "
                             f"size limit of {max_bytes:,} bytes")
        if not parts or len(parts[-1]) >= max_requests or size + len(line) > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append((cid, line))
        size += len(line)
    return parts


@dataclass(frozen=True)
class ResultLine:
    """One result read back. ``status`` is the HTTP status (0: none, an error-file line);
    ``body`` the reply object, or the error's JSON text; ``code`` an error code."""

    custom_id: str
    status: int
    body: str | None
    code: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.code is None

    def reply(self) -> dict[str, Any]:
        data = json.loads(self.body or "null")
        if not isinstance(data, dict):
            raise RetryableError(f"batch result {self.custom_id} has no reply object")
        return data

    def error(self, *, structured: bool) -> ModelError:
        """The error this line stands for, classified as an online reply would be."""
        text = self.body or json.dumps({"error": {"message": self.code or "no result"}})
        if self.status >= 400:
            return classify_error(self.status, text, structured=structured)
        status = RETRYABLE_CODES.get(self.code or "", 0)
        if self.code in RETRYABLE_CODES:
            if status:
                return classify_error(status, text, structured=structured)
            return RetryableError(f"batch line {self.code}: {_message(text)}")
        return PermanentError(f"batch line error {self.code or 'unknown'}: {_message(text)}",
                              status=self.status or None)


def _message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err if err is not None else data)


def parse_result(data: Any) -> ResultLine:
    """A result line's JSON value as a ``ResultLine``; ``ValueError`` if it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
        raise ValueError("not a batch result line (no custom_id)")
    if "response" not in data and "error" not in data:
        # e.g. a shard's own request line: read as a result it would fail every request
        raise ValueError("not a batch result line (neither response nor error; a request "
                         "line?)" if "body" in data else "not a batch result line (neither "
                         "response nor error)")
    cid = data["custom_id"]
    response = data.get("response")
    error = data.get("error")
    code = None
    if isinstance(error, dict):
        # vLLM nests an ErrorResponse ({"error": {...}}); OpenAI's error file has {code, message}
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        code = str(inner.get("code") or inner.get("type") or "error")
    elif error:
        code = "error"
    if isinstance(response, dict):
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if 200 <= status < 300 and isinstance(body, dict) and not error:
            return ResultLine(cid, status, json.dumps(body, ensure_ascii=False))
        text = body if isinstance(body, dict) and body.get("error") else error
        return ResultLine(cid, status or 500, _error_json(text), code or "error")
    return ResultLine(cid, 0, _error_json(error), code or "no_response")


def _error_json(error: Any) -> str:
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        return json.dumps(error, ensure_ascii=False)
    if isinstance(error, dict):
        return json.dumps({"error": error}, ensure_ascii=False)
    return json.dumps({"error": {"message": str(error or "no result")}}, ensure_ascii=False)


def read_result_text(text: str, source: str) -> Iterator[ResultLine | str]:
    """The result lines of one file's text; a line that is not one comes out as a message
    naming the file and line."""
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            yield parse_result(json.loads(raw))
        except ValueError as exc:
            yield f"{source}:{n}: {exc}"


def result_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to read: each path, or the ``*.jsonl`` files under a directory (recursively)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in
                              (".jsonl", ".json", ".ndjson")))
        elif p.exists():
            out.append(p)
        else:
            raise UsageError(f"no such result file or directory: {p}")
    return out
