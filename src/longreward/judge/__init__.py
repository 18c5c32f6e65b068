"""The judge layer: one async call path (``ModelClient``) over pluggable providers.

Import from here; the underscored modules are private and may move.
"""

from ._accounting import ClientStats, Price, TagStats
from ._cache import CallCache
from ._client import Asked, ModelClient, json_schema_of, parse_json_reply
from ._provider import ModelAPI
from ._redact import redact
from ._registry import (
    UnknownProviderError,
    canonical_provider,
    create_apis,
    provider_names,
    register_provider,
)
from ._types import (
    LADDER,
    ContextTooLongError,
    EndpointUnreachableError,
    GenerateConfig,
    JsonSchema,
    JudgeFatalError,
    Message,
    ModelError,
    ModelOutput,
    PermanentError,
    ReplyMode,
    ReplyParseError,
    RetryableError,
    SchemaUnsupportedError,
    StructuredMode,
    StructuredOutput,
    Usage,
)
from .providers.dry_run import DRY_RUN_BANNER, DryRunAPI
from .providers.openai_compatible import OpenAICompatibleAPI
from .providers.transformers_local import TransformersAPI

__all__ = [
    "DRY_RUN_BANNER",
    "LADDER",
    "Asked",
    "CallCache",
    "ClientStats",
    "ContextTooLongError",
    "DryRunAPI",
    "EndpointUnreachableError",
    "GenerateConfig",
    "JsonSchema",
    "JudgeFatalError",
    "Message",
    "ModelAPI",
    "ModelClient",
    "ModelError",
    "ModelOutput",
    "OpenAICompatibleAPI",
    "PermanentError",
    "Price",
    "ReplyMode",
    "ReplyParseError",
    "RetryableError",
    "SchemaUnsupportedError",
    "StructuredMode",
    "StructuredOutput",
    "TagStats",
    "TransformersAPI",
    "UnknownProviderError",
    "Usage",
    "canonical_provider",
    "create_apis",
    "parse_json_reply",
    "json_schema_of",
    "provider_names",
    "redact",
    "register_provider",
]
