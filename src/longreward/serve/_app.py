"""The HTTP app of ``longreward serve`` (FastAPI; ``pip install 'longreward[serve]'``).

One guard in front of every route does the operations part, in this order, so that nothing
is read or scored for a request that will be refused:
1. bearer-token auth (401; ``/health`` stays open for liveness probes),
2. the body cap (413, from Content-Length before reading, or while reading a chunked body),
3. the concurrency limit on the scoring and registration routes (503 + Retry-After),
then it times the request for the metrics. The token is compared in constant time and never
logged; uvicorn's access log has the path and status only.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations, and
``Request`` is imported inside ``create_app`` so that importing this module stays light.
"""

import hmac
import json
import time
from contextlib import asynccontextmanager
from typing import Any

from ..errors import MissingDependencyError
from ._metrics import Metrics
from ._options import ServeOptions
from ._protocols import (
    DocumentsRequest,
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
_LIMITED = {"/score", "/get_reward", "/slime", "/documents"}
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
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > cap:
                    await _send_json(send_wrapper, 413, _too_large(cap))
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

    @app.post("/score")
    async def score(req: NativeRequest, request: Request) -> dict[str, Any]:
        out = await service.score(native_items(req))
        scored(request, out.scoring_seconds)
        return native_reply(out.results)

    @app.post("/get_reward", response_model=None)
    async def get_reward(req: OpenRLHFRequest, request: Request) -> Any:
        try:
            items = openrlhf_items(req, options.strip_suffixes)
        except ProtocolError as exc:
            return unprocessable(exc)
        out = await service.score(items)
        scored(request, out.scoring_seconds)
        return openrlhf_reply(out.results)

    @app.post("/slime")
    async def slime(req: SlimeRequest, request: Request, format: str = "dict") -> Any:
        out = await service.score([slime_item(req, options.strip_suffixes)])
        scored(request, out.scoring_seconds)
        return slime_reply(out.results[0], plain=format == "number")

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
                "dimensions": options.score.dimensions,
                "items": dict(s.items), "run_store": service.store is not None}

    @app.get("/metrics")
    async def metrics_route() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    return _Guard(app, options=options, token=token, metrics=metrics)
