"""One provider for every OpenAI-compatible endpoint: OpenAI, vLLM, SGLang, Ollama, GLM,
DeepSeek... chosen by ``base_url``, never by the model's name.

The SDK's own retries are off (``max_retries=0``): retries live in ``ModelClient`` only. This
module maps SDK exceptions onto our retryable / permanent errors.
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from typing import Any

import openai

from .._provider import ModelAPI
from .._types import (
    ContextTooLongError,
    GenerateConfig,
    JsonSchema,
    Message,
    ModelError,
    ModelOutput,
    PermanentError,
    RetryableError,
    SchemaUnsupportedError,
    Usage,
)

#: Local servers (vLLM, SGLang, Ollama) accept any key; the SDK insists on a non-empty one.
PLACEHOLDER_KEY = "EMPTY"

_CONTEXT_PATTERNS = re.compile(
    r"context[ _-]?length|maximum context|context window|too many tokens|prompt is too long"
    r"|input is too long|longer than the model|exceeds the model|reduce the length",
    re.IGNORECASE,
)
_SCHEMA_PATTERNS = re.compile(
    r"response_format|json_schema|structured[ _-]?output|guided_json|guided decoding",
    re.IGNORECASE,
)


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
        self.base_url = base_url
        self.extra_body = dict(extra_body or {})
        self._max_connections = max_connections
        # The key lives only inside the SDK client: never on self, never in repr or logs.
        self._client = openai.AsyncOpenAI(
            api_key=resolve_api_key(api_key),
            base_url=base_url,
            max_retries=0,
            timeout=timeout if timeout is not None else 600.0,
            default_headers=extra_headers,
        )

    def __repr__(self) -> str:
        return f"OpenAICompatibleAPI(model={self.model!r}, base_url={self.base_url!r})"

    def max_connections(self) -> int:
        return self._max_connections

    def _sampling_kwargs(self, config: GenerateConfig) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "temperature": config.temperature}
        if config.max_tokens is not None:
            kwargs["max_tokens"] = config.max_tokens
        if config.top_p is not None:
            kwargs["top_p"] = config.top_p
        if config.n != 1:
            kwargs["n"] = config.n
        if config.seed is not None:
            kwargs["seed"] = config.seed
        if config.stop:
            kwargs["stop"] = config.stop
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        return kwargs

    async def generate(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
    ) -> ModelOutput:
        kwargs = self._sampling_kwargs(config)
        kwargs["messages"] = [m.model_dump() for m in messages]
        if json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                # strict=False: strict mode rejects common pydantic schemas (optional fields,
                # bounds); we validate the reply ourselves anyway.
                "json_schema": {
                    "name": _schema_name(json_schema),
                    "schema": json_schema,
                    "strict": False,
                },
            }
        try:
            response = await self._client.chat.completions.create(**kwargs)
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, secret=self._client.api_key) from exc
        choices = sorted(response.choices or [], key=lambda c: c.index)
        return ModelOutput(
            texts=[(c.message.content or "") if c.message else "" for c in choices],
            usage=_usage(response.usage),
            model=response.model or self.model,
            finish_reasons=[c.finish_reason for c in choices],
        )

    async def complete_text(self, prompt: str, config: GenerateConfig) -> ModelOutput:
        kwargs = self._sampling_kwargs(config)
        kwargs["prompt"] = prompt
        try:
            response = await self._client.completions.create(**kwargs)
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, secret=self._client.api_key) from exc
        choices = sorted(response.choices or [], key=lambda c: c.index)
        return ModelOutput(
            texts=[c.text or "" for c in choices],
            usage=_usage(response.usage),
            model=response.model or self.model,
            finish_reasons=[c.finish_reason for c in choices],
        )

    async def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            # "float" explicitly: the SDK may ask for base64, which not every
            # OpenAI-compatible server implements.
            response = await self._client.embeddings.create(
                model=self.model, input=texts, encoding_format="float")
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, secret=self._client.api_key) from exc
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise PermanentError(
                f"embedding endpoint returned {len(data)} vectors for {len(texts)} inputs "
                f"(model {self.model!r}); check that the model is an embedding model")
        return [list(d.embedding) for d in data]

    async def aclose(self) -> None:
        await self._client.close()


def create_openai_compatible(
    model: str, *, base_urls: list[str] | None = None, **options: Any
) -> list[OpenAICompatibleAPI]:
    """One API object per base URL (one endpoint each), or one for the default URL."""
    urls: list[str | None] = list(base_urls) if base_urls else [options.pop("base_url", None)]
    options.pop("base_url", None)
    return [OpenAICompatibleAPI(model, base_url=url, **options) for url in urls]


def _schema_name(schema: JsonSchema) -> str:
    # OpenAI requires ^[a-zA-Z0-9_-]{1,64}$ for the name.
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "reply"))
    return name[:64] or "reply"


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(
        prompt_tokens=usage.prompt_tokens or 0,
        completion_tokens=usage.completion_tokens or 0,
        cached_tokens=cached or 0,
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


def _error_text(exc: openai.APIStatusError) -> str:
    # The SDK's message repeats the whole body; the server's own message reads better.
    body = exc.body
    if isinstance(body, dict) and body.get("message"):
        extras = [f"{k}={body[k]}" for k in ("code", "param") if body.get(k)]
        return str(body["message"]) + (f" ({', '.join(extras)})" if extras else "")
    return str(exc.message)


def map_openai_error(exc: Exception, *, secret: str | None = None) -> ModelError:
    """Classify an SDK exception: retryable (429, 5xx, timeouts, connection) or permanent.

    ``secret`` (the API key) is blanked out of the message: servers echo keys in 401 errors,
    and error messages end up in output rows and logs.
    """
    error = _classify(exc)
    if secret and secret != PLACEHOLDER_KEY and secret in str(error):
        redacted = type(error)(
            str(error).replace(secret, "***"), retry_after=error.retry_after, status=error.status
        )
        return redacted
    return error


def _classify(exc: Exception) -> ModelError:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return RetryableError(f"connection problem: {exc}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(exc.response.headers if exc.response is not None else None)
        text = _error_text(exc)
        message = f"HTTP {status}: {text}"
        if status in (408, 409, 425, 429) or status >= 500:
            return RetryableError(message, retry_after=retry_after, status=status)
        if status in (400, 413, 422):
            if _CONTEXT_PATTERNS.search(text):
                return ContextTooLongError(message, status=status)
            if _SCHEMA_PATTERNS.search(text):
                return SchemaUnsupportedError(message, status=status)
        return PermanentError(message, status=status)
    if isinstance(exc, openai.APIResponseValidationError):
        # The server answered 200 with a body the SDK could not read: usually a glitch.
        return RetryableError(f"malformed response: {exc}")
    return PermanentError(f"{type(exc).__name__}: {exc}")
