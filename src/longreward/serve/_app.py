"""The HTTP app of ``longreward serve`` (FastAPI; ``pip install 'longreward[serve]'``).

One guard in front of every route does the operations part, in this order, so that nothing
is read or scored for a request that will be refused:
1. bearer-token auth (401; ``/health`` stays open for liveness probes),
2. the body cap (413, from Content-Length before reading, or while reading a chunked body),
3. the concurrency limit on the scoring and registration routes (503 + Retry-After),
4. a body that stalls longer than ``read_timeout`` (408),
5. strict JSON (422): Python's parser takes NaN, Infinity, 1e999 and escaped lone
   surrogates, none of which the service can hold (a NaN reward, a surrogate that no UTF-8
   text or SQLite row can store): they used to surface as a 500 deep inside,
then it times the request for the metrics. The token is compared in constant time and never
logged; uvicorn's access log has the path and status only.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations, and
``Request`` is imported inside ``create_app`` so that importing this module stays light.
"""

import asyncio
import hmac
import json
import math
import re
import time
from contextlib import asynccontextmanager
from typing import Any

from ..errors import MissingDependencyError
from ._metrics import Metrics
from ._options import ServeOptions
from ._protocols import (
    DocumentsRequest,
    ListwiseRequest,
    NativeRequest,
    OpenRLHFRequest,
    ProtocolError,
    SlimeRequest,
    native_items,
    native_reply,
    openrlhf_items,
    openrlhf_reply,
    slime_item,
    slime_reply,
)
from ._service import RewardService

#: routes the guard counts against ``max_concurrent_requests``
_LIMITED = {"/score", "/get_reward", "/slime", "/documents", "/listwise"}
_OPEN = {"/health"}
_KNOWN = _LIMITED | _OPEN | {"/metrics"}


def _fastapi() -> Any:
    try:
        import fastapi
    except ModuleNotFoundError:
        raise MissingDependencyError("longreward serve", "fastapi", "serve") from None
    return fastapi


def _endpoint(path: str) -> str:
    if path in _KNOWN:
        return path
    if path.startswith("/documents/"):
        return "/documents/{id}"
    return "other"  # bounded label set: a scanner's paths do not grow the metrics


async def _send_json(send: Any, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class _Guard:
    """Pure ASGI middleware: auth, body cap, concurrency limit, timing (see module doc)."""

    def __init__(self, app: Any, *, options: ServeOptions, token: str | None,
                 metrics: Metrics) -> None:
        self.app = app
        self.options = options
        self._token = token.encode() if token else None
        self.metrics = metrics
        self.in_flight = 0

    def _authorized(self, scope: dict[str, Any]) -> bool:
        if self._token is None:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(),
                                                                            self._token)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope["path"]
        endpoint = _endpoint(path)
        status: dict[str, int] = {"code": 500}
        info: dict[str, float] = {}
        scope["longreward"] = info  # the route puts its scoring time here

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        limited = path in _LIMITED
        admitted = False
        try:
            if path not in _OPEN and not self._authorized(scope):
                await _send_json(send_wrapper, 401, {
                    "error": "missing or wrong bearer token: send 'Authorization: Bearer "
                             f"<token>' with the token in ${self.options.auth_token_env} "
                             "on the server"}, [(b"www-authenticate", b"Bearer")])
                return
            cap = self.options.max_body_bytes
            for name, value in scope.get("headers", []):
                if name == b"content-length" and value.isdigit() and int(value) > cap:
                    await _send_json(send_wrapper, 413, _too_large(cap))
                    return
            if limited:
                if self.in_flight >= self.options.max_concurrent_requests:
                    await _send_json(send_wrapper, 503, {
                        "error": f"busy: {self.in_flight} requests in flight (limit "
                                 f"{self.options.max_concurrent_requests}); retry after "
                                 f"{self.options.retry_after}s"},
                        [(b"retry-after", str(self.options.retry_after).encode())])
                    return
                self.in_flight += 1
                admitted = True
                self.metrics.in_flight.inc()
            body = bytearray()
            more = True
            while more:
                try:
                    message = await asyncio.wait_for(receive(), self.options.read_timeout)
                except asyncio.TimeoutError:
                    await _send_json(send_wrapper, 408, {
                        "error": f"the request body stalled for more than "
                                 f"{self.options.read_timeout:g}s (read_timeout)"},
                        [(b"connection", b"close")])
                    return
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > cap:
                    await _send_json(send_wrapper, 413, _too_large(cap))
                    return
            if scope.get("method") == "POST" and (problem := json_problem(bytes(body))):
                await _send_json(send_wrapper, 422, {"error": problem})
                return
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            if admitted:
                self.in_flight -= 1
                self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - t0
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)
            if "scoring" in info:
                self.metrics.overhead.labels(endpoint).observe(
                    max(0.0, elapsed - info["scoring"]))


#: a JSON escape of a UTF-16 surrogate: the only way a lone one gets into a parsed string
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large to be finite")
    return value


def _lone_surrogate(value: Any, path: str = "$") -> str | None:
    """The JSON path of the first string (or key) holding a lone surrogate, if any."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, list):
        for i, v in enumerate(value):
            if (found := _lone_surrogate(v, f"{path}[{i}]")) is not None:
                return found
    elif isinstance(value, dict):
        for k, v in value.items():
            if (found := _lone_surrogate(k, f"{path} key") or
                    _lone_surrogate(v, f"{path}.{k}")) is not None:
                return found
    return None


def json_problem(body: bytes) -> str | None:
    """Why ``body`` is not strict JSON (RFC 8259) holding only text the service can store,
    or None. An empty body is left to the route (FastAPI names the missing field)."""
    if not body.strip():
        return None
    try:
        # strict UTF-8 first: json.loads would take UTF-16 and encoded surrogates
        value = json.loads(body.decode("utf-8"), parse_constant=_not_json,
                           parse_float=_finite)
    except RecursionError:
        return "invalid JSON: nested too deeply"
    except UnicodeDecodeError:
        return "invalid JSON: the body is not UTF-8"
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    if _SURROGATE_ESCAPE.search(body) and (where := _lone_surrogate(value)) is not None:
        return (f"invalid text at {where}: a lone UTF-16 surrogate escape (\\ud800-\\udfff "
                "without its pair), which no UTF-8 text can hold")
    return None


def _too_large(cap: int) -> dict[str, Any]:
    return {"error": f"request body larger than max_body_bytes={cap}; register long "
                     "documents once (POST /documents or --prompts) and send their id, or "
                     "raise max_body_bytes"}


def create_app(service: RewardService) -> Any:
    """The ASGI app over ``service``. Opening the service (run directory, registered
    prompts) happens at startup unless done before; closing it at shutdown."""
    fastapi = _fastapi()
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    options = service.options
    token = options.auth_token()
    metrics = Metrics(service)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        service.open()
        try:
            yield
        finally:
            await service.aclose()

    app = fastapi.FastAPI(title="longreward reward service", lifespan=lifespan,
                          docs_url=None, redoc_url=None, openapi_url=None)

    def scored(request: Request, seconds: float) -> None:
        request.scope["longreward"]["scoring"] = seconds

    def unprocessable(exc: ProtocolError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    deadlines = options.deadlines

    @app.post("/score")
    async def score(req: NativeRequest, request: Request) -> dict[str, Any]:
        out = await service.score(native_items(req), timeout=req.deadline, fill=req.fill)
        scored(request, out.scoring_seconds)
        return native_reply(out.results)

    # OpenRLHF and slime turn the reward into a tensor: a failed sample gets the neutral
    # reward, within a deadline below the client's own timeout.
    @app.post("/get_reward", response_model=None)
    async def get_reward(req: OpenRLHFRequest, request: Request) -> Any:
        try:
            items = openrlhf_items(req, options.strip_suffixes)
        except ProtocolError as exc:
            return unprocessable(exc)
        out = await service.score(items, timeout=deadlines.openrlhf, fill="neutral")
        scored(request, out.scoring_seconds)
        return openrlhf_reply(out.results)

    @app.post("/slime")
    async def slime(req: SlimeRequest, request: Request, format: str = "dict") -> Any:
        out = await service.score([slime_item(req, options.strip_suffixes)],
                                  timeout=deadlines.slime, fill="neutral")
        scored(request, out.scoring_seconds)
        return slime_reply(out.results[0], plain=format == "number")

    @app.post("/listwise", response_model=None)
    async def listwise(req: ListwiseRequest, request: Request) -> Any:
        started = time.perf_counter()
        body = await service.listwise(req.responses, prompt_id=req.prompt_id,
                                      context=req.context, query=req.query, ids=req.ids,
                                      group_size=req.group_size, timeout=req.deadline)
        scored(request, time.perf_counter() - started)
        return JSONResponse(body, status_code=422 if body["skip"] == "invalid" else 200)

    @app.post("/documents", response_model=None)
    async def documents(req: DocumentsRequest) -> Any:
        regs = [service.register(d.id, d.context, d.query, replace=req.replace)
                for d in req.documents]
        body = {"documents": [{"id": r.id, "status": r.status, "document": r.document,
                               "reason": r.reason} for r in regs],
                "registered": service.n_prompts}
        conflict = any(r.status == "conflict" for r in regs)
        return JSONResponse(body, status_code=409 if conflict else 200)

    @app.get("/documents/{prompt_id}", response_model=None)
    async def document(prompt_id: str) -> Any:
        reg = service.lookup(prompt_id)
        if reg is None:
            return JSONResponse({"error": f"unknown prompt id {prompt_id!r}"}, status_code=404)
        text = service.document_text(reg.document) or ""
        return {"id": reg.id, "document": reg.document, "query": reg.query,
                "characters": len(text)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        s = service.stats
        return {"status": "ok", "prompts": service.n_prompts,
                "documents": service.n_documents, "fallback_reward": options.fallback_reward,
                "request_timeout": options.request_timeout,
                "deadlines": options.deadlines.model_dump(),
                "dimensions": options.score.dimensions,
                "items": dict(s.items), "run_store": options.run_dir is not None}

    @app.get("/metrics")
    async def metrics_route() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    return _Guard(app, options=options, token=token, metrics=metrics)
