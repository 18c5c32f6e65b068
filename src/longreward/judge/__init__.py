"""The judge layer: one async call path (``ModelClient``) over pluggable providers.

Import from here; the underscored modules are private and may move.
"""

from .._util.redact import redact
from ._accounting import ClientStats, Price, TagStats
from ._cache import CallCache
from ._client import Asked, ModelClient, json_schema_of, parse_json_reply
from ._probe import probe_endpoint
from ._provider import ModelAPI
from ._registry import (
    ProviderSpec,
    UnknownProviderError,
    canonical_provider,
    create_apis,
    provider_names,
    provider_spec,
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
from ._verdict import (
    PromptText,
    candidates_of,
    claimed,
    fence,
    fold,
    neutralise,
    read_verdict,
    strip_echo,
    verdict_line,
    verdict_lines,
    without_quotes,
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
    "PromptText",
    "ProviderSpec",
    "candidates_of",
    "canonical_provider",
    "claimed",
    "create_apis",
    "fence",
    "fold",
    "json_schema_of",
    "neutralise",
    "parse_json_reply",
    "probe_endpoint",
    "provider_names",
    "provider_spec",
    "read_verdict",
    "redact",
    "register_provider",
    "strip_echo",
    "verdict_line",
    "verdict_lines",
    "without_quotes",
]
