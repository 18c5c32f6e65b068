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
- ``keep_nonce``: whether default text replies label their verdict line with the request's
  verdict code (``nonce_of``), as the prompts ask (True); False plays a judge that drops it.
  JSON replies follow the schema, whose ``const`` holds the code.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
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
        self._fault_rng = random.Random(0)
        self._fault_source: Faults | None = None
        self._queued: list[str] = []
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
            self._fault_source = None
            self._queued.clear()

    # ------------------------------------------------------------------ behaviour

    def like_llama_cpp(self) -> None:
        """Structured output as llama.cpp's server does it (see ``formats``)."""
        self.formats = {"json_object_schema", "json_object"}
        self.format_refusal = LLAMA_CPP_REFUSAL

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
        created = int(time.time())
        usage = self._usage(body, replies)
        model = body.get("model") or self.model
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
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
                {"index": i, "text": text, "finish_reason": "stop", "logprobs": None}
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
        return JSONResponse(payload)

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

        @app.get("/v1/models")
        async def models() -> JSONResponse:
            names = sorted(self.models) if self.models else [self.model]
            return JSONResponse(
                {
                    "object": "list",
                    "data": [
                        {"id": name, "object": "model", "created": 0, "owned_by": "judge-double"}
                        for name in names
                    ],
                }
            )

        return app


_VERDICTS = ("fully", "partially", "not")


#: the verdict code longreward's prompts end with (English and Chinese), read by the double
#: from the request itself, as a judge reads it
_NONCE_LINE = re.compile(r"(?:Verdict code of this request:|本次请求的判定码：)\s*([A-Z0-9]+)\s*$")


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
