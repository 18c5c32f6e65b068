"""The judge layer: one async call path (``ModelClient``) over pluggable providers.

Import from here; the underscored modules are private and may move.
"""

from ._client import (
    Asked,
    CallCache,
    ClientStats,
    ModelClient,
    Price,
    ReplyMode,
    StructuredOutput,
    TagStats,
    parse_json_reply,
)
from ._provider import ModelAPI
from ._registry import (
    UnknownProviderError,
    canonical_provider,
    create_apis,
    provider_names,
    register_provider,
)
from ._types import (
    ContextTooLongError,
    GenerateConfig,
    JsonSchema,
    Message,
    ModelError,
    ModelOutput,
    PermanentError,
    ReplyParseError,
    RetryableError,
    SchemaUnsupportedError,
    Usage,
)
from .providers.dry_run import DRY_RUN_BANNER, DryRunAPI
from .providers.openai_compatible import OpenAICompatibleAPI
from .providers.transformers_local import TransformersAPI

__all__ = [
    "DRY_RUN_BANNER",
    "Asked",
    "CallCache",
    "ClientStats",
    "ContextTooLongError",
    "DryRunAPI",
    "GenerateConfig",
    "JsonSchema",
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
    "StructuredOutput",
    "TagStats",
    "TransformersAPI",
    "UnknownProviderError",
    "Usage",
    "canonical_provider",
    "create_apis",
    "parse_json_reply",
    "provider_names",
    "register_provider",
]
