"""Provider registry: a name maps to a ``module:factory`` path, imported only when used.

Naming a backend is the only way to choose it; the model's name is never inspected. Importing
``longreward.judge`` therefore never imports torch or vllm: a provider's module (and its heavy
dependency) loads when ``create_apis`` is asked for it, and a missing dependency is reported
with the ``pip install`` that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from ..errors import LongRewardError, MissingDependencyError
from ._provider import ModelAPI


class UnknownProviderError(LongRewardError, ValueError):
    """No provider is registered under that name."""


# name -> ("module:attribute", heavy dependencies as (import name, pip extra))
_PROVIDERS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "openai_compatible": (
        "longreward.judge.providers.openai_compatible:create_openai_compatible",
        (),  # httpx, a core dependency
    ),
    "dry_run": ("longreward.judge.providers.dry_run:DryRunAPI", ()),
    "transformers": (
        "longreward.judge.providers.transformers_local:TransformersAPI",
        (("torch", "local"), ("transformers", "local")),
    ),
    "vllm": ("longreward.judge.providers.vllm_local:VLLMAPI", (("vllm", "vllm"),)),
    "llama_cpp": ("longreward.judge.providers.llama_cpp:LlamaCppAPI", (("llama_cpp", "gguf"),)),
}

_ALIASES = {
    "openai": "openai_compatible",
    "openai-compatible": "openai_compatible",
    "dry-run": "dry_run",
    "dryrun": "dry_run",
    "hf": "transformers",
    "llama-cpp": "llama_cpp",
}


def register_provider(
    name: str, target: str, *, requires: tuple[tuple[str, str], ...] = ()
) -> None:
    """Register ``target`` ("package.module:factory") under ``name``. The factory is called as
    ``factory(model, **options)`` and returns a ``ModelAPI`` or a list of them."""
    if ":" not in target:
        raise ValueError(f"target must look like 'package.module:factory', got {target!r}")
    _PROVIDERS[name] = (target, requires)


def provider_names() -> list[str]:
    """Registered names (aliases not included)."""
    return sorted(_PROVIDERS)


def canonical_provider(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _PROVIDERS:
        raise UnknownProviderError(
            f"unknown judge provider {name!r}. Known: {', '.join(provider_names())} "
            "(any OpenAI-compatible server - vLLM, SGLang, Ollama, GLM, DeepSeek - is "
            "'openai_compatible' with --base-url)"
        )
    return key


def _load_factory(name: str) -> Callable[..., ModelAPI | list[ModelAPI]]:
    target, requires = _PROVIDERS[name]
    for module_name, extra in requires:
        if importlib.util.find_spec(module_name) is None:
            raise MissingDependencyError(f"the {name!r} provider", module_name, extra)
    module_path, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        for module_name, extra in requires:
            if exc.name == module_name or (exc.name or "").startswith(module_name + "."):
                raise MissingDependencyError(f"the {name!r} provider", module_name, extra) from exc
        if exc.name == module_path:
            raise UnknownProviderError(
                f"the {name!r} provider is not available in this install ({module_path} is missing)"
            ) from exc
        raise
    return getattr(module, attribute)


def create_apis(
    provider: str, model: str, *, base_urls: list[str] | None = None, **options: Any
) -> list[ModelAPI]:
    """Build the endpoint objects for one judge or policy model.

    ``base_urls`` (OpenAI-compatible only) gives one endpoint per URL; ``ModelClient`` spreads
    calls over them. Other options go to the provider's constructor (``api_key``,
    ``extra_headers``, ``device``, ``dtype``...).
    """
    name = canonical_provider(provider)
    factory = _load_factory(name)
    if name == "openai_compatible":
        made = factory(model, base_urls=base_urls, **options)
    else:
        if base_urls:
            raise ValueError(
                f"base URLs only apply to the 'openai_compatible' provider, not {name!r}; "
                "to use a server, pass --provider openai_compatible --base-url ..."
            )
        made = factory(model, **options)
    return list(made) if isinstance(made, list | tuple) else [made]
