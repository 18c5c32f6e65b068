"""Types shared by every model call: messages, generation settings, outputs, usage, errors.

These are the contract between providers (``ModelAPI`` subclasses), the one call path
(``ModelClient``) and its users (the dimensions, sampling).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import LongRewardError

Role = Literal["system", "user", "assistant"]

#: How a dimension's prompt asks for its reply: a JSON object ("json") or tagged text ("text").
ReplyMode = Literal["json", "text"]

#: How a request asks the endpoint for structure, best first (the capability ladder):
#: ``response_format`` json_schema; llama.cpp's ``{"type": "json_object", "schema": ...}``
#: (grammar-constrained); plain json_object (JSON, shape from the prompt only); no
#: ``response_format`` and a tagged-text reply.
StructuredMode = Literal["json_schema", "json_object_schema", "json_object", "text"]
LADDER: tuple[StructuredMode, ...] = ("json_schema", "json_object_schema", "json_object", "text")

#: The ``structured_output`` option: "auto" climbs down the ladder per endpoint; a mode forces
#: it; "json" is the 0.1 name of "json_schema".
StructuredOutput = Literal["auto", "json", "json_schema", "json_object_schema", "json_object",
                           "text"]


def reply_mode_of(mode: StructuredMode) -> ReplyMode:
    """The prompt a request in ``mode`` needs: every JSON rung uses the JSON reply prompt."""
    return "text" if mode == "text" else "json"


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
    #: ask for the log-probabilities of each reply token and of this many alternatives at
    #: each position (OpenAI's ``logprobs: true, top_logprobs: k``); None: not asked
    logprobs: int | None = Field(default=None, ge=1, le=20)


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


class TokenLogprob(BaseModel):
    """One reply token as the endpoint reported it: its text, its log-probability, its
    UTF-8 bytes when given (a token may hold part of a character), and the most likely
    tokens at its position with theirs (``top``, the chosen one usually among them)."""

    model_config = ConfigDict(extra="forbid")

    token: str
    logprob: float
    bytes: list[int] | None = None
    top: list[tuple[str, float]] = Field(default_factory=list)


class ModelOutput(BaseModel):
    """What one model call returned: one text per choice (``n`` choices), and per choice
    the token log-probabilities when they were asked for and the endpoint gave them."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str]
    logprobs: list[list[TokenLogprob] | None] | None = None
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    finish_reasons: list[str | None] = Field(default_factory=list)
    cached: bool = False  # served from the run's call cache, no request made

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class ModelError(LongRewardError):
    """A model call failed. ``retryable`` says whether trying again can help. One call's
    failure: the client retries it or reports it as a result; it does not stop a run
    (``JudgeFatalError`` does)."""

    retryable: bool = False
    #: the endpoint that failed, as shown to users (no secrets), set by the client
    endpoint: str | None = None

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RetryableError(ModelError):
    """429, 5xx, timeouts, connection resets."""

    retryable = True


class EndpointUnreachableError(RetryableError):
    """No HTTP answer at all (connection refused, DNS, reset, timeout): an outage, never an
    answer about what the endpoint supports."""


class PermanentError(ModelError):
    """400, 401, 403, 404, ... : the same request will fail again."""

    retryable = False


class ContextTooLongError(PermanentError):
    """The prompt does not fit the model's window."""


class SchemaUnsupportedError(PermanentError):
    """The endpoint refused the request's ``response_format`` (recognised from the error body,
    whatever the status); the client steps down the structured-output ladder."""


class JudgeFatalError(LongRewardError):
    """Retrying cannot fix this and every further call would fail the same way (the key is
    refused, the model does not exist, the same permanent error call after call): the run
    stops with this one message. Deliberately not a ``ModelError``, so code that turns one
    failed call into an unscored result lets it through."""


#: Why a judge step has no verdict: the judged answer's own text made the verdict unreadable
#: or the judge refused because of it ("answer": the dimension scores its minimum); the judge
#: failed for reasons unrelated to the answer (an outage, a reply with no verdict, the
#: deadline: "judge"); or a bug ("internal"). The last two leave the reward null, mask 0.
Cause = Literal["answer", "judge", "internal"]


class ReplyParseError(LongRewardError, ValueError):
    """A judge reply could not be parsed. Raised by text parsers given to ``ModelClient.ask``;
    the client re-asks, and after its last attempt reports the reply as unscored.

    ``cause`` is "answer" when the judged text is what made the reply unreadable (the only
    verdict is a quote of it, or equals a verdict it writes for itself), else "judge"."""

    def __init__(self, message: str, *, cause: Cause = "judge") -> None:
        super().__init__(message)
        self.cause: Cause = cause


JsonSchema = dict[str, Any]
