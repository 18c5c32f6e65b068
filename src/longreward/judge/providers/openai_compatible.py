"""One provider for every OpenAI-compatible endpoint: OpenAI, vLLM, SGLang, Ollama, llama.cpp,
GLM, DeepSeek... chosen by ``base_url``, never by the model's name.

It speaks the chat-completions wire format over httpx directly rather than through the openai
SDK: the SDK's parameter processing (type-driven transforms of every request, JSON schema
included) and response models cost more CPU per call than the whole rest of the judge path,
and a judge run makes millions of calls. Retries live in ``ModelClient`` only; this module
maps HTTP outcomes onto our retryable / permanent errors, recognising a structured-output
refusal from the error body whatever the status.

Connections: httpx's pool scans all its connections (some checks per pair of connections) on
every request and reply, which grows with the square of the pool size and dominated the
client's CPU at 64 concurrent requests. The connections are therefore split over several small
pools ("shards") of at most ``SHARD_SIZE`` connections, and each request goes to the least busy
one.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import math
import os
import re
import time
from typing import Any

import httpx

from ..._util.redact import add_secrets, redact
from .._provider import ModelAPI
from .._types import (
    LADDER,
    ContextTooLongError,
    EndpointUnreachableError,
    GenerateConfig,
    JsonSchema,
    Message,
    ModelError,
    ModelOutput,
    PermanentError,
    RetryableError,
    SchemaUnsupportedError,
    StructuredMode,
    TokenLogprob,
    Usage,
)

#: Local servers (vLLM, SGLang, Ollama) accept any key; a placeholder keeps proxies happy.
PLACEHOLDER_KEY = "EMPTY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: connections per httpx pool (see the module docstring)
SHARD_SIZE = 8

_CONTEXT_PATTERNS = re.compile(
    r"context[ _-]?length|maximum context|context window|too many tokens|prompt is too long"
    r"|input is too long|longer than the model|exceeds the model|reduce the length",
    re.IGNORECASE,
)
_SCHEMA_PATTERNS = re.compile(
    r"response_format|json_schema|json_object|structured[ _-]?output|guided_json"
    r"|guided decoding|grammar",
    re.IGNORECASE,
)
#: statuses whose meaning does not depend on the body: never read as a schema refusal
_NOT_A_REFUSAL = (401, 403, 404, 408, 429)

#: Fields a server needs before it samples as OpenAI's parameters say, by the ``owned_by`` of
#: its model listing. llama-cpp-python's server ("me") applies repeat_penalty 1.1 unless told
#: otherwise: at temperature 0 a judge then does not write its most probable verdict but one
#: pushed away from the numbers of the last 64 tokens (its own analysis, the scale, the
#: answer). Seen with SmolLM2: the verdict 4 written where 0 had 0.55 and 4 had 0.05.
#: (llama.cpp's own llama-server has defaulted to 1.0 since 2024.)
SERVER_SAMPLING: dict[str, dict[str, Any]] = {"me": {"repeat_penalty": 1.0}}
#: how long the model listing that ``server_sampling`` reads may take
LISTING_TIMEOUT_S = 10.0

logger = logging.getLogger(__name__)


def resolve_api_key(api_key: str | None) -> str:
    """The argument, else ``LONGREWARD_API_KEY``, else ``OPENAI_API_KEY``, else a placeholder."""
    return (
        api_key
        or os.environ.get("LONGREWARD_API_KEY")
        or os.environ.get("OPENAI_API_KEY")
        or PLACEHOLDER_KEY
    )


class OpenAICompatibleAPI(ModelAPI):
    provider = "openai_compatible"
    structured_modes = LADDER

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        extra_headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
        timeout: float | None = None,
        max_connections: int = 32,
    ) -> None:
        super().__init__(model)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
                         ).rstrip("/")
        self.extra_body = dict(extra_body or {})
        self.timeout = timeout if timeout is not None else 600.0
        self._max_connections = max_connections
        key = resolve_api_key(api_key)
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json",
                   "Content-Type": "application/json"}
        headers.update(extra_headers or {})
        # The key and header values live only in the request headers: never on self as
        # text, never in repr, messages or logs (``redact`` masks them everywhere).
        self._secret_values = [v for k, v in headers.items()
                               if k not in ("Accept", "Content-Type") and v != PLACEHOLDER_KEY]
        self._secret_values.append(key if key != PLACEHOLDER_KEY else "")
        add_secrets(self._secret_values)
        shards = max(1, math.ceil(max_connections / SHARD_SIZE))
        self._shards = [
            httpx.AsyncClient(
                base_url=self.base_url, headers=headers, verify=_ssl_context(),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 30.0)),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=SHARD_SIZE),
            )
            for _ in range(shards)
        ]
        self._load = [0] * shards
        self._closed = False
        #: sampling fields this server needs to sample as OpenAI's parameters say, read from
        #: its model listing (None: not listed yet; ``server_sampling``)
        self._sampling_fields: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatibleAPI(model={self.model!r}, base_url={redact(self.base_url)!r})"

    def max_connections(self) -> int:
        return self._max_connections

    def cache_identity(self) -> dict[str, Any]:
        # extra_body changes the replies (sampling fields, server options): a cached reply
        # made under other fields is not this request's. (Without one, the key is as before,
        # so existing run stores stay valid.)
        identity = super().cache_identity()
        if self.extra_body:
            identity["extra_body"] = self.extra_body
        return identity

    # ------------------------------------------------------------------ requests

    def _sampling_body(self, config: GenerateConfig) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "temperature": config.temperature}
        if config.max_tokens is not None:
            body["max_tokens"] = config.max_tokens
        if config.top_p is not None:
            body["top_p"] = config.top_p
        if config.n != 1:
            body["n"] = config.n
        if config.seed is not None:
            body["seed"] = config.seed
        if config.stop:
            body["stop"] = config.stop
        if config.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = config.logprobs
        return body

    async def server_sampling(self) -> dict[str, Any]:
        """The fields that make this server sample as OpenAI's parameters say, read once from
        its model listing (``list_models`` records them; ``SERVER_SAMPLING``); the caller's
        ``extra_body`` wins."""
        if self._sampling_fields is None:
            try:
                await asyncio.wait_for(self.list_models(), LISTING_TIMEOUT_S)
            except EndpointUnreachableError:
                return {}  # not up yet: look again at the next request
            except (ModelError, asyncio.TimeoutError):
                self._sampling_fields = {}  # no listing: nothing known to add
        return self._sampling_fields or {}

    async def _post(self, path: str, body: dict[str, Any], *, structured: bool = False
                    ) -> dict[str, Any]:
        if path != "/embeddings" and (own := await self.server_sampling()):
            body = {**body, **own}
        if self.extra_body:
            body = {**body, **self.extra_body}
        self._check_open()
        i = min(range(len(self._shards)), key=self._load.__getitem__)
        self._load[i] += 1
        try:
            response = await self._shards[i].post(
                path, content=json.dumps(body, ensure_ascii=False).encode("utf-8"))
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except RuntimeError:
            self._check_open()  # closed while this request waited for a connection
            raise
        finally:
            self._load[i] -= 1
        return self._read(response, structured=structured)

    def _check_open(self) -> None:
        # A run that stops (a fatal judge error, Ctrl-C) closes its client while calls of
        # other answers may still be waiting to retry; they must end as a failed call, not
        # as httpx's "Cannot send a request, as the client has been closed", which would be
        # read as a bug (an internal error with its traceback).
        if self._closed:
            raise ClientClosedError(f"not sent: the client for {redact(self.base_url)} was "
                                    "closed (the run is stopping)")

    def _transport_error(self, exc: httpx.HTTPError) -> ModelError:
        text = redact(f"{type(exc).__name__}: {exc}", self._secret_values)
        if isinstance(exc, httpx.TimeoutException | httpx.ConnectError | httpx.ProxyError):
            error = EndpointUnreachableError(f"connection problem: {text}")
            # refused or no such host: nothing listens there (a timeout may be a busy server)
            error.cannot_connect = isinstance(exc, httpx.ConnectError)  # type: ignore[attr-defined]
            return error
        if isinstance(exc, httpx.TransportError):  # reset, protocol error mid-reply
            return RetryableError(f"connection problem: {text}")
        return PermanentError(text)  # a bad URL and the like: the same next time

    def _read(self, response: httpx.Response, *, structured: bool) -> dict[str, Any]:
        status = response.status_code
        if status >= 400:
            raise classify_error(status, response.text, response.headers, structured=structured,
                                 secrets=self._secret_values)
        try:
            data = response.json()
        except ValueError:
            raise RetryableError(
                f"malformed response (HTTP {status}, not JSON): "
                f"{redact(response.text[:200], self._secret_values)}") from None
        if not isinstance(data, dict):
            raise RetryableError(f"malformed response (HTTP {status}): not a JSON object")
        if data.get("error") and not data.get("choices") and not data.get("data"):
            # some servers report errors with HTTP 200
            raise classify_error(500, response.text, response.headers, structured=structured,
                                 secrets=self._secret_values)
        return data

    async def generate(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
        *,
        response_format: StructuredMode = "json_schema",
    ) -> ModelOutput:
        body = self._sampling_body(config)
        body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        fmt = _response_format(json_schema, response_format)
        if fmt is not None:
            body["response_format"] = fmt
        data = await self._post("/chat/completions", body, structured=fmt is not None)
        choices = _choices(data)
        return ModelOutput(
            texts=[_content((c.get("message") or {}).get("content")) for c in choices],
            logprobs=[token_logprobs(c.get("logprobs")) for c in choices]
            if config.logprobs else None,
            usage=_usage(data.get("usage")),
            model=str(data.get("model") or self.model),
            finish_reasons=[c.get("finish_reason") for c in choices],
        )

    async def complete_text(self, prompt: str, config: GenerateConfig) -> ModelOutput:
        body = self._sampling_body(config)
        body["prompt"] = prompt
        data = await self._post("/completions", body)
        choices = _choices(data)
        return ModelOutput(
            texts=[_content(c.get("text")) for c in choices],
            usage=_usage(data.get("usage")),
            model=str(data.get("model") or self.model),
            finish_reasons=[c.get("finish_reason") for c in choices],
        )

    async def embed(self, texts: list[str]) -> list[list[float]]:
        # "float" explicitly: not every OpenAI-compatible server implements base64.
        data = await self._post("/embeddings", {"model": self.model, "input": texts,
                                                "encoding_format": "float"})
        items = data.get("data")
        if not isinstance(items, list):
            raise RetryableError("malformed embeddings response: no 'data' list")
        items = sorted(items, key=lambda d: d.get("index", 0))
        if len(items) != len(texts):
            raise PermanentError(
                f"embedding endpoint returned {len(items)} vectors for {len(texts)} inputs "
                f"(model {self.model!r}); check that the model is an embedding model")
        return [[float(x) for x in d.get("embedding") or []] for d in items]

    async def list_models(self) -> list[dict[str, Any]]:
        """``GET /models``: the served models as the server describes them. The first
        listing also tells which sampling fields this server needs (``server_sampling``)."""
        self._check_open()
        i = min(range(len(self._shards)), key=self._load.__getitem__)
        try:
            response = await self._shards[i].get("/models")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        data = self._read(response, structured=False)
        items = data.get("data")
        models = [d for d in items if isinstance(d, dict)] if isinstance(items, list) else []
        if self._sampling_fields is None:
            found: dict[str, Any] = {}
            for owner in sorted({str(m.get("owned_by")) for m in models}):
                found.update(SERVER_SAMPLING.get(owner, {}))
            if found:
                logger.info("%s: its default sampling departs from OpenAI's; requests carry %s",
                            redact(self.base_url), found)
            self._sampling_fields = found
        return models

    async def aclose(self) -> None:
        self._closed = True
        for shard in self._shards:
            await shard.aclose()


class ClientClosedError(ModelError):
    """A call made after its client was closed: the run is stopping, nothing was sent. Not
    retried, and no evidence about the endpoint (so fail-fast does not count it)."""


def create_openai_compatible(
    model: str, *, base_urls: list[str] | None = None, **options: Any
) -> list[OpenAICompatibleAPI]:
    """One API object per base URL (one endpoint each), or one for the default URL."""
    urls: list[str | None] = list(base_urls) if base_urls else [options.pop("base_url", None)]
    options.pop("base_url", None)
    return [OpenAICompatibleAPI(model, base_url=url, **options) for url in urls]


@functools.lru_cache(maxsize=1)
def _ssl_context() -> Any:
    # one for the process: building one (loading the CA bundle) takes ~20 ms, per pool
    return httpx.create_ssl_context()


# ---------------------------------------------------------------------- wire format

@functools.lru_cache(maxsize=256)
def _schema_name(title: str) -> str:
    # OpenAI requires ^[a-zA-Z0-9_-]{1,64}$ for the name.
    return re.sub(r"[^a-zA-Z0-9_-]", "_", title)[:64] or "reply"


def _response_format(schema: JsonSchema | None, mode: StructuredMode) -> dict[str, Any] | None:
    if schema is None or mode == "text":
        return None
    if mode == "json_schema":
        # strict=False: strict mode rejects common pydantic schemas (optional fields,
        # bounds); we validate the reply ourselves anyway.
        return {"type": "json_schema",
                "json_schema": {"name": _schema_name(str(schema.get("title") or "reply")),
                                "schema": schema, "strict": False}}
    if mode == "json_object_schema":  # llama.cpp: JSON constrained by a grammar from the schema
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


def _choices(data: dict[str, Any]) -> list[dict[str, Any]]:
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise RetryableError("malformed response: no 'choices' list")
    return sorted((c for c in choices if isinstance(c, dict)), key=lambda c: c.get("index", 0))


def _content(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def token_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    """A chat choice's ``logprobs`` in OpenAI's format (``{"content": [{"token", "logprob",
    "bytes", "top_logprobs": [{"token", "logprob"}]}]}``: OpenAI, vLLM, SGLang, llama.cpp's
    servers) as ``TokenLogprob``s; None when the endpoint gave none or a shape we do not know
    (the verdict is then read as an integer, and the row says so)."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    out = []
    for item in content:
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            return None
        top = [(str(t["token"]), _logprob(t.get("logprob")))
               for t in item.get("top_logprobs") or [] if isinstance(t, dict) and "token" in t]
        raw = item.get("bytes")
        out.append(TokenLogprob(token=item["token"], logprob=_logprob(item.get("logprob")),
                                bytes=raw if isinstance(raw, list) else None, top=top))
    return out


def _logprob(value: Any) -> float:
    # servers write -inf as null or a huge negative number; either is "never"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return -9999.0
    return -9999.0 if math.isnan(v) else min(0.0, max(v, -9999.0))


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    # DeepSeek reports its prefix-cache hits under its own name
    cached = cached or usage.get("prompt_cache_hit_tokens")
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
    )


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_text(body: str) -> str:
    """The server's own message from an error body (OpenAI's ``{"error": {"message"}}``,
    FastAPI's ``{"detail": ...}``, a bare string), else the body itself, shortened."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            extras = [f"{k}={err[k]}" for k in ("code", "param") if err.get(k)]
            return str(err["message"]) + (f" ({', '.join(extras)})" if extras else "")
        if isinstance(err, str) and err:
            return err
        for key in ("detail", "message"):
            if data.get(key):
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(body.split())
    return text if len(text) <= 1000 else text[:999] + "…"


def classify_error(status: int, body: str, headers: Any = None, *, structured: bool = False,
                   secrets: list[str] | None = None) -> ModelError:
    """An HTTP error as retryable (429, 5xx, 408…) or permanent, with the special cases the
    client acts on: a prompt too long for the model, and a refused ``response_format``.

    A refusal is read from the body whatever the status: llama.cpp's server answers a
    json_schema request with HTTP 500 and a validation error naming ``response_format``;
    others use 400 or 422. It only counts when the request carried a ``response_format``.
    The message is redacted (servers echo keys and headers in error bodies).
    """
    text = error_text(body)
    message = redact(f"HTTP {status}: {text}", secrets or ())
    retry_after = parse_retry_after(headers)
    if status in (400, 413, 422) and _CONTEXT_PATTERNS.search(text):
        return ContextTooLongError(message, status=status)
    if structured and status not in _NOT_A_REFUSAL and _SCHEMA_PATTERNS.search(body):
        return SchemaUnsupportedError(message, status=status)
    if status in (408, 409, 425, 429) or status >= 500:
        return RetryableError(message, retry_after=retry_after, status=status)
    return PermanentError(message, status=status)
