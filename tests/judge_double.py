"""A judge double: a small OpenAI-compatible HTTP server on 127.0.0.1 for tests.

The real client code (openai SDK, ModelClient, retries, the cache) runs against it, so tests
exercise the same path as production. It is deterministic and offline.

    with JudgeDouble() as double:
        api = OpenAICompatibleAPI("judge-double", base_url=double.base_url)
        double.faults = Faults(rate=0.2, kinds=("429", "500"))

Run it by hand: ``python tests/judge_double.py --port 8765`` (with longreward installed, or
``PYTHONPATH=src``).

The client's structured-output probe (a fixed request) is answered like any other request
except that it skips ``responder`` and faults, and is logged in ``probes``, not ``requests``.

Knobs (thread-safe to set from the test while the server runs):
- ``responder``: ``callable(request_json) -> str | list[str] | None`` (None: default reply)
- ``reject_schema``: 400 for any request with ``response_format`` json_schema
- ``formats``: the ``response_format`` kinds accepted ("json_schema", "json_object_schema",
  "json_object"; None: all); another kind gets ``format_refusal`` (status, message). Use
  ``like_llama_cpp()``: llama.cpp's server refuses json_schema with a 500 naming
  ``response_format`` and takes ``{"type": "json_object", "schema": ...}``
- ``faults``: ``Faults(rate, kinds, seed, retry_after)`` injected on completion endpoints
- ``queue_faults(*kinds)``: the next completion requests fail with these kinds, in order,
  before any random fault (uses ``faults``' retry_after / timeout_s when set)
- ``required_api_key``: 401 unless ``Authorization: Bearer <key>``
- ``models``: if set, a request for another model gets 404
- ``context_limit``: prompts above this many tokens (≈chars/4) get a context-length 400
- ``fail_with``: ``(status, message)`` returned for every completion request
- ``delay``: seconds to hold every completion request
- ``hold``: while True, every completion request (not the format probe) waits
- ``ignore_n``: answer one choice whatever ``n`` asks (as llama.cpp's server does)
- ``probe_delay``: seconds to hold the format probe before anything else (a probe that
  times out on a busy server)
- ``give_logprobs``: whether a request with ``logprobs: true`` gets token log-probabilities
  in OpenAI's format (``choices[i].logprobs.content``: token, logprob, bytes, top_logprobs,
  at most ``top_logprobs`` of them); False plays an endpoint that ignores the parameter.
  Replies are cut into tokens with digits one by one (as Llama's and Qwen's tokenizers do, so
  "10" is "1", "0"), runs of letters, runs of spaces, and single other characters
- ``token_probs``: ``callable(before, token) -> {token: probability} | None``: the
  distribution at the position of ``token`` (``before``: the reply's text before it); None
  (or no callable) means the token written had probability 1
- ``honour_max_tokens``: cut each reply at the request's ``max_tokens`` (≈4 characters a
  token) with ``finish_reason: "length"``, as a real server does (False: replies are whole)
- ``keep_nonce``: whether default text replies label their verdict line with the request's
  verdict code (``nonce_of``), as the prompts ask (True); False plays a judge that drops it.
  JSON replies follow the schema, whose ``const`` holds the code.

The Files and Batches APIs (``/v1/files``, ``/v1/batches``: create, retrieve, list, cancel,
output and error files) run each batch line through the same replies, checks and queued
faults as an online request (logged in ``requests`` with ``"batch"`` set to the batch id).
Their knobs:
- ``batch_hold``: while True, running batches do not advance (stay ``in_progress``)
- ``batch_line_delay``: seconds per line
- ``batch_fail``: ``(code, message, after)``: the next batch fails (``after=0``: at
  validation, no output; else after that many lines, which keep their results)
- ``batch_expire_after``: the next batch expires after this many lines; the rest go to the
  error file as ``batch_expired``
- ``batch_line_error``: ``callable(body) -> (status, message) | None``: that line's response
  (in the error file, as OpenAI puts failed requests)
- ``batch_drop``: ``callable(body) -> bool``: that line is in neither file
- ``hold_upload`` / ``hold_create``: "before" or "after" (storing the file / creating the
  batch) to hold that request, ``hold_download``: hold file content downloads (a client
  killed at that moment)
- ``batch_log``: what happened, as ``(event, id)`` tuples: upload, create_request, create,
  cancel, download. A request held "before" that loses its client does nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from longreward.judge import Message, _ladder
from longreward.judge._schema_instance import schema_instance
from longreward.judge.providers.dry_run import reply_sentences, texts_from

EMBEDDING_DIM = 64
#: what llama-cpp-python's server answers to a json_schema ``response_format`` (HTTP 500, a
#: request-validation error; our wording)
LLAMA_CPP_REFUSAL = (500, "1 validation error: {'type': 'literal_error', 'loc': ('body', "
                          "'response_format', 'type'), 'msg': \"Input should be 'text' or "
                          "'json_object'\", 'input': 'json_schema'}")
#: the client's structured-output probe, a fixed request (see ``longreward.judge._ladder``)
PROBE_MESSAGES = [m.model_dump() for m in _ladder.PROBE_MESSAGES]
FAULT_KINDS = ("429", "500", "timeout", "invalid_json", "empty")

Responder = Callable[[dict[str, Any]], "str | list[str] | None"]


@dataclass(frozen=True)
class Faults:
    """Inject a fault into a fraction ``rate`` of completion requests (seeded, so a test run
    sees the same sequence). ``timeout`` holds the request ``timeout_s`` seconds: longer than
    the client timeouts the tests use."""

    rate: float = 0.2
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    retry_after: float = 0.05
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")


class RequestLog(list):
    """Received requests: dicts with ``path`` and ``body``. ``count(path)`` counts those whose
    path ends with ``path`` (all when None)."""

    def count(self, path: str | None = None) -> int:  # type: ignore[override]
        return sum(1 for r in self if path is None or r["path"].endswith(path))


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _seed(value: Any) -> int:
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:8], "big")


def hashed_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic bag-of-words vector: each word adds ±1 at a hashed position."""
    vector = [0.0] * dim
    for word in text.lower().split():
        word = "".join(ch for ch in word if ch.isalnum())
        if not word:
            continue
        digest = hashlib.sha256(word.encode("utf-8")).digest()
        vector[digest[0] % dim] += 1.0 if digest[1] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class JudgeDouble:
    """An OpenAI-compatible server in a background thread. A context manager; ``start()`` and
    ``stop()`` work too."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: str = "judge-double") -> None:
        self.host = host
        self.port = port
        self.model = model
        self._lock = threading.Lock()
        self._requests = RequestLog()
        self._probes = RequestLog()
        self._seen_prefixes: set[str] = set()
        self.responder: Responder | None = None
        self.reject_schema = False
        self.formats: set[str] | None = None
        self.format_refusal: tuple[int, str] = LLAMA_CPP_REFUSAL
        self.faults: Faults | None = None
        self.required_api_key: str | None = None
        self.models: set[str] | None = None
        self.context_limit: int | None = None
        self.fail_with: tuple[int, str] | None = None
        self.delay = 0.0
        self.hold = False
        self.probe_delay = 0.0
        self.ignore_n = False
        self.keep_nonce = True
        self.give_logprobs = True
        self.honour_max_tokens = False
        self.owned_by = "judge-double"
        self.token_probs: Callable[[str, str], dict[str, float] | None] | None = None
        self._fault_rng = random.Random(0)
        self._fault_source: Faults | None = None
        self._queued: list[str] = []
        self._batch_defaults()
        self._stopping = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> JudgeDouble:
        self._stopping = False
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="judge-double", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the judge double did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._stopping = True  # held requests (timeout faults, delay) end now
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> JudgeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> RequestLog:
        with self._lock:
            return RequestLog(self._requests)

    def count(self, path: str | None = None) -> int:
        return self.requests.count(path)

    @property
    def probes(self) -> RequestLog:
        """The client's structured-output probes, kept apart from ``requests``."""
        with self._lock:
            return RequestLog(self._probes)

    def reset(self) -> None:
        """Forget requests and restore every knob to its default."""
        with self._lock:
            self._requests.clear()
            self._probes.clear()
            self._seen_prefixes.clear()
            self.responder = None
            self.reject_schema = False
            self.formats = None
            self.format_refusal = LLAMA_CPP_REFUSAL
            self.faults = None
            self.required_api_key = None
            self.models = None
            self.context_limit = None
            self.fail_with = None
            self.delay = 0.0
            self.hold = False
            self.probe_delay = 0.0
            self.ignore_n = False
            self.keep_nonce = True
            self.give_logprobs = True
            self.honour_max_tokens = False
            self.owned_by = "judge-double"
            self.token_probs = None
            self._fault_source = None
            self._queued.clear()
            self._batch_defaults()

    def _batch_defaults(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_log: list[tuple[str, str]] = []
        self.batch_hold = False
        self.batch_line_delay = 0.0
        self.batch_fail: tuple[str, str, int] | None = None
        self.batch_expire_after: int | None = None
        self.batch_line_error: Callable[[dict[str, Any]], tuple[int, str] | None] | None = None
        self.batch_drop: Callable[[dict[str, Any]], bool] | None = None
        self.hold_upload: str | None = None
        self.hold_create: str | None = None
        self.hold_download = False
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ behaviour

    def like_llama_cpp(self) -> None:
        """Structured output as llama.cpp's server does it (see ``formats``), and its model
        listing (``owned_by: "me"``)."""
        self.formats = {"json_object_schema", "json_object"}
        self.format_refusal = LLAMA_CPP_REFUSAL
        self.owned_by = "me"

    def queue_faults(self, *kinds: str) -> None:
        """Fail the next completion requests with ``kinds`` (e.g. "429", "500"), in order."""
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        with self._lock:
            self._queued.extend(kinds)

    def _draw_fault(self) -> str | None:
        with self._lock:
            if self._queued:
                return self._queued.pop(0)
        faults = self.faults
        if faults is None or faults.rate <= 0 or not faults.kinds:
            return None
        with self._lock:
            if self._fault_source is not faults:  # a new Faults object restarts its sequence
                self._fault_rng = random.Random(faults.seed)
                self._fault_source = faults
            if self._fault_rng.random() >= faults.rate:
                return None
            return self._fault_rng.choice(list(faults.kinds))

    def _authorized(self, request: Request) -> bool:
        key = self.required_api_key
        return key is None or request.headers.get("authorization") == f"Bearer {key}"

    def _gate(self, request: Request, body: dict[str, Any]) -> JSONResponse | None:
        """Errors that do not depend on the fault draw: auth, model, format, size."""
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        return self._check(body)

    def _check(self, body: dict[str, Any]) -> JSONResponse | None:
        """The body's own errors: model, format, size (online requests and batch lines)."""
        if self.models is not None and body.get("model") not in self.models:
            return _error(
                404, f"The model `{body.get('model')}` does not exist.", code="model_not_found"
            )
        if self.fail_with is not None:
            status, message = self.fail_with
            return _error(status, message)
        kind = _format_kind(body)
        if kind is not None and self.formats is not None and kind not in self.formats:
            status, message = self.format_refusal
            return _error(status, message, param="response_format",
                          kind="server_error" if status >= 500 else "invalid_request_error")
        if self.reject_schema and body.get("response_format"):
            return _error(
                400,
                "response_format type 'json_schema' is not supported by this server",
                param="response_format",
            )
        if self.context_limit is not None:
            used = _tokens(_prompt_text(body))
            if used > self.context_limit:
                return _error(
                    400,
                    f"This model's maximum context length is {self.context_limit}"
                    f" tokens. However, you requested {used} tokens.",
                    code="context_length_exceeded",
                )
        return None

    def _replies(self, body: dict[str, Any], chat: bool) -> list[str]:
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        responder = self.responder
        if body.get("messages") == PROBE_MESSAGES:
            responder = None  # the client's format probe: any reply will do
        if responder is not None:
            custom = responder(body)
            if custom is not None:
                replies = [custom] if isinstance(custom, str) else list(custom)
                return (replies * n)[:n] if len(replies) < n else replies
        seed = _seed({k: v for k, v in body.items() if k != "stream"})
        if chat:
            messages = [
                Message(role=m["role"], content=_content(m.get("content")))
                for m in body.get("messages", [])
                if m.get("role") in ("system", "user", "assistant")
            ]
        else:
            messages = [Message(role="user", content=str(body.get("prompt", "")))]
        sentences = reply_sentences(messages)
        schema = _requested_schema(body)
        if schema is not None:
            return [
                json.dumps(
                    schema_instance(schema, random.Random(seed + i), sentences), ensure_ascii=False
                )
                for i in range(n)
            ]
        texts = texts_from(sentences, seed, n)
        system = _content(body["messages"][0].get("content")) if chat and body.get(
            "messages") else ""
        code = nonce_of(body) if self.keep_nonce else None
        return [_tagged_reply(system, _prompt_text(body), t, seed + i, sentences, code)
                for i, t in enumerate(texts)]

    def _usage(self, body: dict[str, Any], replies: list[str]) -> dict[str, Any]:
        prompt = _prompt_text(body)
        messages = body.get("messages") or []
        # Prefix-cache simulation: a first message seen before counts as cached.
        first = _content(messages[0].get("content")) if messages else ""
        cached = 0
        if first:
            with self._lock:
                if first in self._seen_prefixes:
                    cached = _tokens(first)
                self._seen_prefixes.add(first)
        prompt_tokens = _tokens(prompt)
        completion_tokens = sum(_tokens(r) for r in replies)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": min(cached, prompt_tokens)},
        }

    async def _hold(self, seconds: float) -> None:
        # Sleep in slices so that stop() does not wait for a held request to finish.
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))

    async def _complete(self, request: Request, chat: bool) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not valid JSON")
        path = request.url.path
        with self._lock:
            # The client's format probe is logged apart and never draws a fault, so tests
            # that count judge requests or queue faults see only the judge's own calls.
            probe = body.get("messages") == PROBE_MESSAGES
            (self._probes if probe else self._requests).append({"path": path, "body": body})
        if probe and self.probe_delay:
            await self._hold(self.probe_delay)
        gated = self._gate(request, body)
        if gated is not None:
            return gated
        if self.delay:
            await self._hold(self.delay)
        while self.hold and not probe and not self._stopping:
            await asyncio.sleep(0.05)
        fault = None if probe else self._draw_fault()
        faults = self.faults
        if fault == "429":
            return _error(
                429,
                "Rate limit reached; slow down.",
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": f"{faults.retry_after if faults else 0.05:g}"},
            )
        if fault == "500":
            return _error(
                500, "The server had an error while processing your request.", kind="server_error"
            )
        if fault == "timeout":
            await self._hold(faults.timeout_s if faults else 2.0)
        replies = self._replies(body, chat)
        if fault == "invalid_json":
            replies = ["Sorry, I am not sure about this one {" for _ in replies]
        elif fault == "empty":
            replies = ["" for _ in replies]
        return JSONResponse(self._payload(body, chat, replies))

    def _payload(self, body: dict[str, Any], chat: bool, replies: list[str]) -> dict[str, Any]:
        """A completion object holding ``replies``."""
        created = int(time.time())
        finish = ["stop"] * len(replies)
        limit = body.get("max_tokens")
        if self.honour_max_tokens and limit:  # cut where a real server's budget ends
            finish = ["length" if _tokens(r) > limit else "stop" for r in replies]
            replies = [r[:4 * limit] for r in replies]
        usage = self._usage(body, replies)
        model = body.get("model") or self.model
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish[i],
                    "logprobs": self._logprobs(text, body),
                }
                for i, text in enumerate(replies)
            ]
            payload = {
                "id": f"chatcmpl-{_seed(body) % 10**12}",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
            }
        else:
            choices = [
                {"index": i, "text": text, "finish_reason": finish[i], "logprobs": None}
                for i, text in enumerate(replies)
            ]
            payload = {
                "id": f"cmpl-{_seed(body) % 10**12}",
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
            }
        return payload

    def _logprobs(self, text: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """OpenAI's ``logprobs`` object for ``text``, when asked for and ``give_logprobs``."""
        if not body.get("logprobs") or not self.give_logprobs:
            return None
        k = int(body.get("top_logprobs") or 0)
        content, before = [], ""
        for token in TOKEN.findall(text):
            dist = (self.token_probs(before, token) if self.token_probs else None) or {token: 1.0}
            dist.setdefault(token, 0.0)
            top = sorted(dist.items(), key=lambda kv: -kv[1])[:k]
            content.append({
                "token": token, "logprob": _log(dist[token]), "bytes": list(token.encode()),
                "top_logprobs": [{"token": t, "logprob": _log(p), "bytes": list(t.encode())}
                                 for t, p in top]})
            before += token
        return {"content": content, "refusal": None}

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="longreward judge double")

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> JSONResponse:
            return await self._complete(request, chat=True)

        @app.post("/v1/completions")
        async def completions(request: Request) -> JSONResponse:
            return await self._complete(request, chat=False)

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> JSONResponse:
            body = await request.json()
            with self._lock:
                self._requests.append({"path": request.url.path, "body": body})
            if not self._authorized(request):
                return _error(401, "Incorrect API key provided.", code="invalid_api_key")
            inputs = body.get("input", [])
            if isinstance(inputs, str):
                inputs = [inputs]
            data = []
            for i, text in enumerate(inputs):
                vector = hashed_embedding(str(text))
                if body.get("encoding_format") == "base64":
                    # The openai SDK asks for base64 float32 by default.
                    packed = struct.pack(f"<{len(vector)}f", *vector)
                    embedding: Any = base64.b64encode(packed).decode("ascii")
                else:
                    embedding = vector
                data.append({"object": "embedding", "index": i, "embedding": embedding})
            tokens = sum(_tokens(str(t)) for t in inputs)
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model") or self.model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

        self._batch_routes(app)

        @app.get("/v1/models")
        async def models() -> JSONResponse:
            names = sorted(self.models) if self.models else [self.model]
            return JSONResponse(
                {
                    "object": "list",
                    "data": [
                        {"id": name, "object": "model", "created": 0, "owned_by": self.owned_by}
                        for name in names
                    ],
                }
            )

        return app

    # ------------------------------------------------------------------ files and batches

    async def _wait_while(self, flag: Callable[[], bool], request: Request | None = None
                          ) -> bool:
        """Hold while ``flag()``; False if the client went away meanwhile (killed)."""
        while flag() and not self._stopping:
            if request is not None and await request.is_disconnected():
                return False
            await asyncio.sleep(0.02)
        return True

    def _new_file(self, name: str, data: bytes, purpose: str) -> dict[str, Any]:
        fid = f"file-{next(self._ids):06d}"
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}
        with self._lock:
            self.files[fid] = {**meta, "content": data}
        return meta

    def _file_meta(self, fid: str) -> dict[str, Any]:
        return {k: v for k, v in self.files[fid].items() if k != "content"}

    def _batch_view(self, bid: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.batches[bid]))

    def _batch_line(self, line: dict[str, Any], bid: str) -> tuple[str | None, dict[str, Any]]:
        """Run one input line; (which file it goes to, its result line)."""
        body = line.get("body") or {}
        url = str(line.get("url"))
        with self._lock:
            self._requests.append({"path": url, "body": body, "batch": bid})
        rid = f"batch_req_{_seed([bid, line.get('custom_id')]) % 10**12}"

        def failed(status: int, message: str, code: str | None = None) -> tuple[str, dict]:
            return "error", {"id": rid, "custom_id": line.get("custom_id"), "response": {
                "status_code": status, "request_id": rid, "body": {"error": {
                    "message": message, "type": "invalid_request_error" if status < 500
                    else "server_error", "code": code}}}, "error": None}

        if self.batch_drop is not None and self.batch_drop(body):
            return None, {}
        if url not in ("/v1/chat/completions", "/v1/completions"):
            return failed(400, f"unsupported url {url}")
        gated = self._check(body)
        if gated is not None:
            err = json.loads(bytes(gated.body))["error"]
            return failed(gated.status_code, err["message"], err.get("code"))
        custom = self.batch_line_error(body) if self.batch_line_error else None
        if custom is not None:
            return failed(*custom)
        fault = self._draw_fault()
        if fault in ("429", "500", "timeout"):
            return failed(429 if fault == "429" else 500, "The server had an error.")
        chat = url.endswith("/chat/completions")
        replies = self._replies(body, chat)
        if fault in ("invalid_json", "empty"):
            replies = ["" if fault == "empty" else "Sorry {" for _ in replies]
        return "output", {"id": rid, "custom_id": line.get("custom_id"), "response": {
            "status_code": 200, "request_id": rid, "body": self._payload(body, chat, replies)},
            "error": None}

    async def _process(self, bid: str) -> None:
        try:
            await self._run_batch(bid)
        except Exception as exc:  # a bug here must not leave the batch running forever
            with self._lock:
                self.batches[bid].update(status="failed", errors={"object": "list", "data": [
                    {"code": "double_error", "message": repr(exc), "param": None,
                     "line": None}]})
            raise

    async def _run_batch(self, bid: str) -> None:
        batch = self.batches[bid]

        def set_(**fields: Any) -> None:
            with self._lock:
                batch.update(fields)

        await asyncio.sleep(0.01)
        try:
            lines = [json.loads(x) for x in
                     self.files[batch["input_file_id"]]["content"].decode().splitlines()
                     if x.strip()]
        except ValueError:
            lines = None
        fail, expire = self.batch_fail, self.batch_expire_after
        self.batch_fail = self.batch_expire_after = None  # each knob is for one batch
        if lines is None or (fail is not None and fail[2] == 0):
            code, message = ("invalid_json_line", "the input file is not JSONL") if (
                lines is None) else fail[:2]  # type: ignore[index]
            set_(status="failed", failed_at=int(time.time()),
                 errors={"object": "list", "data": [{"code": code, "message": message,
                                                     "param": None, "line": None}]})
            return
        set_(status="in_progress", in_progress_at=int(time.time()),
             request_counts={"total": len(lines), "completed": 0, "failed": 0})
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        end = "completed"
        done = 0
        for i, line in enumerate(lines):
            await self._wait_while(lambda: self.batch_hold)
            if self._stopping:
                return
            if batch["status"] == "cancelling":
                end = "cancelled"
            elif expire is not None and i >= expire:
                end = "expired"
            elif fail is not None and i >= fail[2]:
                end = "failed"
            if end != "completed":
                break
            if self.batch_line_delay:
                await self._hold(self.batch_line_delay)
            where, result = self._batch_line(line, bid)
            done = i + 1
            if where is not None:
                (output if where == "output" else errors).append(result)
            counts = batch["request_counts"]
            set_(request_counts={**counts, "completed": counts["completed"] + (where == "output"),
                                 "failed": counts["failed"] + (where == "error")})
        if end in ("expired", "cancelled"):
            code = {"expired": "batch_expired", "cancelled": "batch_cancelled"}[end]
            for line in lines[done:]:
                errors.append({"id": f"batch_req_{next(self._ids)}",
                               "custom_id": line.get("custom_id"), "response": None,
                               "error": {"code": code, "message": f"This request was not run: "
                                                                  f"the batch {end}."}})
        set_(status="finalizing" if end != "cancelled" else "cancelling",
             finalizing_at=int(time.time()))
        fields: dict[str, Any] = {"status": end, f"{end}_at": int(time.time())}
        for kind, rows in (("output", output), ("error", errors)):
            if rows:
                data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                fields[f"{kind}_file_id"] = self._new_file(f"{bid}_{kind}.jsonl", data,
                                                           "batch_output")["id"]
        if end == "failed" and fail is not None:
            fields["errors"] = {"object": "list", "data": [{"code": fail[0], "message": fail[1],
                                                            "param": None, "line": None}]}
        set_(**fields)

    def _batch_routes(self, app: FastAPI) -> None:
        def page(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
            after = request.query_params.get("after")
            limit = int(request.query_params.get("limit") or 20)
            if after is not None:
                ids = [i["id"] for i in items]
                items = items[ids.index(after) + 1:] if after in ids else []
            chosen = items[:limit]
            return {"object": "list", "data": chosen, "has_more": len(items) > limit,
                    "first_id": chosen[0]["id"] if chosen else None,
                    "last_id": chosen[-1]["id"] if chosen else None}

        def denied(request: Request) -> JSONResponse | None:
            if not self._authorized(request):
                return _error(401, "Incorrect API key provided.", code="invalid_api_key")
            return None

        @app.post("/v1/files")
        async def upload(request: Request) -> JSONResponse:
            if (d := denied(request)) is not None:
                return d
            raw = await request.body()
            head = f"Content-Type: {request.headers.get('content-type')}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
            fields: dict[str, Any] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                fields[name] = (part.get_filename(), part.get_payload(decode=True))
            if "file" not in fields:
                return _error(400, "no file in the upload")
            purpose = (fields.get("purpose") or (None, b"batch"))[1].decode()
            if not await self._wait_while(lambda: self.hold_upload == "before", request):
                return _error(499, "client closed the request")
            meta = self._new_file(fields["file"][0] or "upload.jsonl", fields["file"][1], purpose)
            self.batch_log.append(("upload", meta["id"]))
            await self._wait_while(lambda: self.hold_upload == "after")
            return JSONResponse(meta)

        @app.get("/v1/files")
        async def list_files(request: Request) -> JSONResponse:
            if (d := denied(request)) is not None:
                return d
            purpose = request.query_params.get("purpose")
            items = [self._file_meta(f) for f in reversed(list(self.files))
                     if purpose is None or self.files[f]["purpose"] == purpose]
            return JSONResponse(page(items, request))

        @app.get("/v1/files/{fid}")
        async def get_file(fid: str, request: Request) -> JSONResponse:
            if (d := denied(request)) is not None:
                return d
            if fid not in self.files:
                return _error(404, f"No such File object: {fid}")
            return JSONResponse(self._file_meta(fid))

        @app.get("/v1/files/{fid}/content")
        async def file_content(fid: str, request: Request) -> Any:
            from fastapi.responses import Response

            if (d := denied(request)) is not None:
                return d
            if fid not in self.files:
                return _error(404, f"No such File object: {fid}")
            self.batch_log.append(("download", fid))
            await self._wait_while(lambda: self.hold_download)
            return Response(self.files[fid]["content"], media_type="application/octet-stream")

        @app.post("/v1/batches")
        async def create_batch(request: Request) -> JSONResponse:
            if (d := denied(request)) is not None:
                return d
            body = await request.json()
            fid = body.get("input_file_id")
            if fid not in self.files or self.files[fid]["purpose"] != "batch":
                return _error(400, f"input_file_id {fid} is not a file uploaded for batch")
            if body.get("endpoint") not in ("/v1/chat/completions", "/v1/completions"):
                return _error(400, f"unsupported endpoint {body.get('endpoint')}")
            self.batch_log.append(("create_request", fid))
            if not await self._wait_while(lambda: self.hold_create == "before", request):
                return _error(499, "client closed the request")
            now = int(time.time())
            bid = f"batch_{next(self._ids):06d}"
            with self._lock:
                self.batches[bid] = {
                    "id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                    "input_file_id": fid, "completion_window": body.get("completion_window"),
                    "status": "validating", "output_file_id": None, "error_file_id": None,
                    "created_at": now, "in_progress_at": None, "expires_at": now + 86400,
                    "finalizing_at": None, "completed_at": None, "failed_at": None,
                    "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                    "request_counts": {"total": 0, "completed": 0, "failed": 0},
                    "metadata": body.get("metadata")}
            self.batch_log.append(("create", bid))
            asyncio.get_running_loop().create_task(self._process(bid))
            view = self._batch_view(bid)
            await self._wait_while(lambda: self.hold_create == "after")
            return JSONResponse(view)

        @app.get("/v1/batches")
        async def list_batches(request: Request) -> JSONResponse:
            if (d := denied(request)) is not None:
                return d
            items = [self._batch_view(b) for b in reversed(list(self.batches))]
            return JSONResponse(page(items, request))

        @app.get("/v1/batches/{bid}")
        async def get_batch(bid: str, request: Request) -> JSONResponse:
            if (d := denied(request)) is not None:
                return d
            if bid not in self.batches:
                return _error(404, f"No such Batch object: {bid}")
            return JSONResponse(self._batch_view(bid))

        @app.post("/v1/batches/{bid}/cancel")
        async def cancel_batch(bid: str, request: Request) -> JSONResponse:
            if (d := denied(request)) is not None:
                return d
            if bid not in self.batches:
                return _error(404, f"No such Batch object: {bid}")
            with self._lock:
                batch = self.batches[bid]
                if batch["status"] in ("validating", "in_progress"):
                    batch.update(status="cancelling", cancelling_at=int(time.time()))
            self.batch_log.append(("cancel", bid))
            return JSONResponse(self._batch_view(bid))


_VERDICTS = ("fully", "partially", "not")


#: the verdict code longreward's prompts end with (English and Chinese), read by the double
#: from the request itself, as a judge reads it
_NONCE_LINE = re.compile(r"(?:Verdict code of this request:|本次请求的判定码：)\s*([A-Z0-9]+)\s*$")


#: how the double cuts a reply into tokens (see ``give_logprobs``)
TOKEN = re.compile(r"\d|[^\W\d_]+|\s+|[^\w\s]|_")


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -9999.0


def nonce_of(body: dict[str, Any]) -> str | None:
    """The verdict code a request asks the judge to copy (None: the step has none)."""
    messages = body.get("messages") or []
    m = _NONCE_LINE.search(_content(messages[-1].get("content")).rstrip()) if messages else None
    return m.group(1) if m else None


def _tagged_reply(system: str, prompt: str, text: str, seed: int, sentences: list[str],
                  code: str | None = None) -> str:
    """A text-mode reply in the format the prompt's instructions ask for (longreward's tagged
    formats, the verdict line labelled with ``code`` when given), so the text fallback can be
    exercised end to end without a script; any other prompt gets prose ending in a bracketed
    rating."""
    label = f"{code} " if code else ""
    if "[[K: VERDICT]]" in system:
        numbers = re.findall(r"^\((\d+)\) ", prompt, flags=re.M)
        return "\n".join(f"({k}) checked.\n{label}[[{k}: {_VERDICTS[(seed + int(k)) % 3]}]]"
                         for k in numbers)
    if "[[VERDICT]]" in system:
        return f"{text}\n{label}[[{_VERDICTS[seed % 3]}]]"
    for tag in ("statement", "point"):
        if f"<{tag}>" in system:
            return "\n".join(f"<{tag}>{s}</{tag}>" for s in sentences[:3]) or "<none/>"
    return f"{text}\n{label or 'Rating: '}[[{seed % 10 + 1}]]"


def _content(content: Any) -> str:
    # The chat API also allows a list of content parts.
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return "".join(_content(m.get("content")) for m in body["messages"])
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def _requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema")
        return schema if isinstance(schema, dict) else {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_object" and isinstance(
            fmt.get("schema"), dict):
        return fmt["schema"]  # llama.cpp style
    return None


def _format_kind(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return "json_object_schema" if "schema" in fmt else "json_object"
    return str(fmt.get("type"))


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the longreward judge double by hand.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--reject-schema", action="store_true")
    args = parser.parse_args()
    double = JudgeDouble(host=args.host, port=args.port)
    double.reject_schema = args.reject_schema
    if args.fault_rate:
        double.faults = Faults(rate=args.fault_rate)
    with double:
        print(f"judge double listening on {double.base_url} (Ctrl+C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()


#: the verdict secret ``use_verdict_secret`` gives run stores by default (tests only)
TEST_VERDICT_SECRET = "5e" * 32


def use_verdict_secret(*run_dirs: Any, secret: str | None = None,
                       like: Any = None) -> None:
    """Give these run directories' stores one verdict secret (``like``'s, else ``secret``,
    else ``TEST_VERDICT_SECRET``). A store makes its own random secret on first use, so two
    runs that must send byte-equal requests (online against batch, a killed run against its
    reference) need the same one: the double's replies are a function of the request, and
    the request carries the verdict code derived from the secret."""
    from longreward.store import RunStore

    if like is not None:
        with RunStore(like) as ref:
            secret = ref.verdict_secret().hex()
    for run_dir in run_dirs:
        with RunStore(run_dir) as store:
            store.set_meta("secret:verdict_nonce", secret or TEST_VERDICT_SECRET, scrub=False)
