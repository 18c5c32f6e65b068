"""Types shared by every model call: messages, generation settings, outputs, usage, errors.

These are the contract between providers (``ModelAPI`` subclasses), the one call path
(``ModelClient``) and its users (the dimensions, sampling).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str


class GenerateConfig(BaseModel):
    """Per-call generation settings. Part of the cache key."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = 0.0
    max_tokens: int | None = None
    top_p: float | None = None
    n: int = Field(default=1, ge=1)
    seed: int | None = None
    stop: list[str] | None = None


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelOutput(BaseModel):
    """What one model call returned: one text per choice (``n`` choices)."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str]
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    finish_reasons: list[str | None] = Field(default_factory=list)
    cached: bool = False  # served from the run's call cache, no request made

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class ModelError(Exception):
    """A model call failed. ``retryable`` says whether trying again can help."""

    retryable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RetryableError(ModelError):
    """429, 5xx, timeouts, connection resets."""

    retryable = True


class PermanentError(ModelError):
    """400, 401, 403, 404, ... : the same request will fail again."""

    retryable = False


class ContextTooLongError(PermanentError):
    """The prompt does not fit the model's window."""


class SchemaUnsupportedError(PermanentError):
    """The endpoint rejected ``response_format`` json_schema; the caller switches to text mode."""


class ReplyParseError(ValueError):
    """A judge reply could not be parsed. Raised by text parsers given to ``ModelClient.ask``;
    the client re-asks, and after its last attempt reports the reply as unscored."""


JsonSchema = dict[str, Any]
