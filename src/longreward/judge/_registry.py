"""Provider registry: everything the package knows about a provider, by name, in one place.

A name maps to a :class:`ProviderSpec`: where its factory lives (imported only when used), the
extras it needs, its aliases, whether the model runs in this process or behind an endpoint, and
how its engine's context window is set. Nothing outside this module compares provider names:
options normalise a name here when they are validated (``llama-cpp`` -> ``llama_cpp``), and
sampling, the CLI's dry-run banner and the endpoint options ask the spec.

Naming a backend is the only way to choose it; the model's name is never inspected. Importing
``longreward.judge`` therefore never imports torch or vllm: a provider's module (and its heavy
dependency) loads when ``create_apis`` is asked for it, and a missing dependency is reported
with the ``pip install`` that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import LongRewardError, MissingDependencyError
from ._provider import ModelAPI


class UnknownProviderError(LongRewardError, ValueError):
    """No provider is registered under that name."""


@dataclass(frozen=True)
class ProviderSpec:
    """What the package knows about one provider."""

    name: str
    #: ``"package.module:factory"``; called as ``factory(model, **options)``
    target: str
    #: heavy dependencies as (import name, pip extra), checked before the module is imported
    requires: tuple[tuple[str, str], ...] = ()
    aliases: tuple[str, ...] = ()
    #: the model runs in this process (its tokenizer and window can be read from it), as
    #: opposed to an endpoint reached over HTTP
    local: bool = False
    #: takes endpoint options: base URLs, API key, extra headers and body, timeout
    remote: bool = False
    #: gives placeholder replies, not a model's (the CLI says so in a banner)
    placeholder: bool = False
    #: provider options that set the window the engine runs with (dotted for nested ones,
    #: first found wins), and the window when none is given (``None``: the model's own)
    window_options: tuple[str, ...] = ()
    default_window: int | None = None
    #: the engine runs with exactly that window, even above the model's trained one
    #: (llama.cpp); otherwise the engine caps it at the trained window
    window_is_exact: bool = False

    def engine_window(self, options: Mapping[str, Any]) -> int | None:
        """The context window the engine runs with under ``options``, when it is set below or
        apart from the model's own (``None``: the model's own, read from its config)."""
        for key in self.window_options:
            value: Any = options
            for part in key.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is not None:
                return value if isinstance(value, int) and value > 0 else None
        return self.default_window


#: llama.cpp's context window when no ``n_ctx`` is given (``sample`` budgets for it too)
LLAMA_CPP_DEFAULT_N_CTX = 4096

_PROVIDERS: dict[str, ProviderSpec] = {}
_ALIASES: dict[str, str] = {}


def register_provider(
    name: str, target: str, *, requires: tuple[tuple[str, str], ...] = (),
    aliases: tuple[str, ...] = (), **facts: Any,
) -> ProviderSpec:
    """Register ``target`` ("package.module:factory") under ``name``. The factory is called as
    ``factory(model, **options)`` and returns a ``ModelAPI`` or a list of them. ``facts`` are
    the other :class:`ProviderSpec` fields (``local=True`` for a model run in this process,
    ``remote=True`` for one behind an endpoint, its window options...)."""
    if ":" not in target:
        raise ValueError(f"target must look like 'package.module:factory', got {target!r}")
    spec = ProviderSpec(name, target, requires, aliases, **facts)
    _PROVIDERS[name] = spec
    for alias in aliases:
        _ALIASES[alias] = name
    return spec


register_provider(
    "openai_compatible", "longreward.judge.providers.openai_compatible:create_openai_compatible",
    aliases=("openai", "openai-compatible"), remote=True)  # httpx: a core dependency
register_provider("dry_run", "longreward.judge.providers.dry_run:DryRunAPI",
                  aliases=("dry-run", "dryrun"), placeholder=True)
register_provider(
    "transformers", "longreward.judge.providers.transformers_local:TransformersAPI",
    requires=(("torch", "local"), ("transformers", "local")), aliases=("hf",), local=True)
register_provider(
    "vllm", "longreward.judge.providers.vllm_local:VLLMAPI", requires=(("vllm", "vllm"),),
    local=True, window_options=("max_model_len", "engine_args.max_model_len"))
register_provider(
    "llama_cpp", "longreward.judge.providers.llama_cpp:LlamaCppAPI",
    requires=(("llama_cpp", "gguf"),), aliases=("llama-cpp",), local=True,
    window_options=("n_ctx",), default_window=LLAMA_CPP_DEFAULT_N_CTX, window_is_exact=True)


def provider_names() -> list[str]:
    """Registered names (aliases not included)."""
    return sorted(_PROVIDERS)


def canonical_provider(name: str) -> str:
    """The registered name for ``name`` or one of its aliases (case and spaces ignored)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _PROVIDERS:
        raise UnknownProviderError(
            f"unknown judge provider {name!r}. Known: {', '.join(provider_names())} "
            "(any OpenAI-compatible server - vLLM, SGLang, Ollama, GLM, DeepSeek - is "
            "'openai_compatible' with --base-url)"
        )
    return key


def provider_spec(name: str) -> ProviderSpec:
    """The spec of ``name`` (an alias works too)."""
    return _PROVIDERS[canonical_provider(name)]


def check_requirements(name: str) -> None:
    """Raise ``MissingDependencyError`` (with the ``pip install`` that fixes it) when a heavy
    dependency of provider ``name`` is not installed. Cheap: nothing is imported."""
    for module_name, extra in provider_spec(name).requires:
        if not _installed(module_name):
            raise MissingDependencyError(f"the {name!r} provider", module_name, extra)


def _installed(module_name: str) -> bool:
    if module_name in sys.modules:  # imported already (or blocked: None)
        return sys.modules[module_name] is not None
    return importlib.util.find_spec(module_name) is not None


def import_requirement(name: str, module_name: str) -> ModuleType:
    """Import one of provider ``name``'s heavy dependencies, or say which extra installs it."""
    extra = dict(provider_spec(name).requires)[module_name]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(f"the {name!r} provider", module_name, extra) from exc


def _load_factory(name: str) -> Callable[..., ModelAPI | list[ModelAPI]]:
    check_requirements(name)
    spec = _PROVIDERS[name]
    module_path, _, attribute = spec.target.partition(":")
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        for module_name, extra in spec.requires:
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

    ``base_urls`` (remote providers only) gives one endpoint per URL; ``ModelClient`` spreads
    calls over them. Other options go to the provider's constructor (``api_key``,
    ``extra_headers``, ``device``, ``dtype``...).
    """
    name = canonical_provider(provider)
    factory = _load_factory(name)
    if _PROVIDERS[name].remote:
        made = factory(model, base_urls=base_urls, **options)
    else:
        if base_urls:
            raise ValueError(
                f"base URLs only apply to the 'openai_compatible' provider, not {name!r}; "
                "to use a server, pass --provider openai_compatible --base-url ..."
            )
        made = factory(model, **options)
    return list(made) if isinstance(made, list | tuple) else [made]
