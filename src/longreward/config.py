"""Typed, validated options. A YAML/TOML config file and the CLI flags fill the same models,
so a run is described the same way whichever way it was started."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ConfigError
from .io.records import FieldMap
from .judge import (
    ModelAPI,
    ModelClient,
    Price,
    StructuredOutput,
    canonical_provider,
    create_apis,
    provider_spec,
)
from .reward.dimensions import DIMENSIONS as DIMENSION_NAMES


def check_dimension_names(names: list[str]) -> list[str]:
    """``names`` if every one is a registered dimension, else a ValueError naming the bad ones."""
    bad = [d for d in names if d not in DIMENSION_NAMES]
    if bad:
        raise ValueError(f"unknown dimension(s) {bad}; choose from {list(DIMENSION_NAMES)}")
    return names


def renamed(data: Any, old: str, new: str, model: str) -> Any:
    """Accept an option under its 0.1 name for one release (the 0.1 names meant different
    things in different sections: ``max_context_tokens`` cut documents in ``sample`` and
    rejected them in ``score``)."""
    if isinstance(data, dict) and old in data:
        if new in data:
            raise ValueError(f"{model}: give {new!r} only ({old!r} is its old name)")
        import warnings

        warnings.warn(f"{model}.{old} is now {model}.{new}", DeprecationWarning, stacklevel=2)
        data = {**data, new: data[old]}
        del data[old]
    return data


class EndpointOptions(BaseModel):
    """How to reach a model — the judge or the policy — through the one call path
    (``ModelClient``): provider, endpoints, key, limits, retries."""

    model_config = ConfigDict(extra="forbid")

    provider: str = "openai_compatible"
    model: str | None = None
    base_urls: list[str] = Field(default_factory=list)
    #: name of the environment variable holding the key. The key itself is never accepted in
    #: a config file, so it cannot end up in a run directory or a shared YAML.
    api_key_env: str | None = None
    timeout: float = Field(default=300.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=6, ge=0)
    #: the longest wait a server's ``Retry-After`` can impose before a retry, seconds
    max_retry_after: float = Field(default=120.0, gt=0)
    extra_headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    #: USD per million tokens, for the cost estimate
    prices: Price | None = None
    #: provider-specific settings, e.g. ``device`` for transformers, ``engine_args`` for vLLM
    provider_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("provider")
    @classmethod
    def _registered_name(cls, v: str) -> str:
        # One name per provider from here on (``llama-cpp`` and ``llama_cpp`` behave alike):
        # everything downstream asks the registry about the canonical name.
        return canonical_provider(v)

    @field_validator("base_urls", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def api_key(self) -> str | None:
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"api_key_env names ${self.api_key_env}, which is not set")
            return key
        return None  # the provider falls back to LONGREWARD_API_KEY / OPENAI_API_KEY

    def create_apis(self, default_model: str) -> list[ModelAPI]:
        """One provider object per endpoint."""
        opts: dict[str, Any] = dict(self.provider_options)
        if provider_spec(self.provider).remote:
            opts.update(api_key=self.api_key(), extra_headers=self.extra_headers or None,
                        extra_body=self.extra_body or None, timeout=self.timeout)
        return create_apis(self.provider, self.model or default_model,
                           base_urls=self.base_urls or None, **opts)

    def client(self, apis: list[ModelAPI], *, cache: Any = None, **extra: Any) -> ModelClient:
        """The ``ModelClient`` over ``apis`` with these limits and retries."""
        return ModelClient(apis, cache=cache, max_concurrency=self.max_concurrency, rpm=self.rpm,
                           tpm=self.tpm, max_retries=self.max_retries, timeout=self.timeout,
                           max_retry_after=self.max_retry_after,
                           prices=self.prices, **extra)


class JudgeOptions(EndpointOptions):
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int | None = Field(default=2048, ge=1)
    #: unparsable replies are re-asked up to this many times in all (paper's code: 5)
    attempts: int = Field(default=5, ge=1)
    #: temperature for re-asks after an unparsable reply (paper's code: 0.95)
    retry_temperature: float = Field(default=0.95, ge=0)
    #: auto: the best format the endpoint takes (json_schema → json_object with schema →
    #: json_object → text), found once and kept in the run store; or one of them forced
    #: ("json" is the old name of "json_schema")
    structured_output: StructuredOutput = "auto"


class RetrievalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["bm25", "dense", "api", "hybrid"] = "bm25"
    #: sentence-transformers model (dense) or embedding model name (api)
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    #: for hybrid: which dense side to fuse with BM25
    hybrid_with: Literal["dense", "api"] = "dense"
    top_k: int = Field(default=5, ge=1)
    chunk_tokens: int = Field(default=128, ge=16)


class ScoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    judge: JudgeOptions = Field(default_factory=JudgeOptions)
    dimensions: list[str] = Field(default_factory=lambda: list(DIMENSION_NAMES))
    weights: dict[str, float] | None = None
    #: what a dimension the judge left unscored (an outage, the deadline) does to the reward:
    #: "no_reward" (default): the reward is null, mask 0 in serve; "mean_of_scored" (opt-in):
    #: the mean over the dimensions that were scored. A dimension the answer itself made
    #: unreadable is never unscored: it scores its minimum (see ``combine_reward``).
    unscored_dimension: Literal["no_reward", "mean_of_scored"] = "no_reward"
    language: Literal["auto", "en", "zh"] = "auto"
    #: Hugging Face tokenizer name or local path used to count tokens for chunking;
    #: None uses a built-in approximate tokenizer that downloads nothing
    tokenizer: str | None = None
    retrieval: RetrievalOptions = Field(default_factory=RetrievalOptions)
    completeness_chunk_tokens: int = Field(default=4096, ge=64)
    #: statements graded per judge call (1 = the paper's one call per statement; larger
    #: values batch an answer's statements against the union of their evidence)
    grade_batch_size: int = Field(default=1, ge=1, le=64)
    #: reject documents longer than this many tokens (None: no limit). Not ``sample``'s
    #: ``context_window``, which cuts documents to fit the policy.
    max_document_tokens: int | None = Field(default=None, ge=1)
    fields: FieldMap = Field(default_factory=FieldMap)
    #: prompts scored at once; the judge client caps requests per endpoint separately
    prompt_concurrency: int = Field(default=8, ge=1)
    #: copy the document into every output row (needed by ``pairs`` without --prompts)
    keep_context: bool = False
    #: show the judge the answer in its canonical layout (``longreward.text.canonical``:
    #: NFC, one kind of space, no indentation, runs of spaces and blank lines collapsed, list
    #: markers dropped, code fences kept), so that layout alone cannot move the reward and a
    #: layout-only variant costs no judge call. False sends the answer as written (the paper).
    canonical_layout: bool = True
    #: keep only the statements of the split that are grounded in the answer's own text
    #: (``longreward.text.grounding``: its numbers and names, and a word of the answer's
    #: own); the split is re-asked once before one is dropped. "off": grade every statement
    #: the split returns (the paper)
    statement_grounding: Literal["answer", "off"] = "answer"
    #: how faithfulness combines the grades: "fixed_cost" (default): 10 minus
    #: ``unsupported_cost`` per unsupported statement (half for a partial one), so true
    #: padding cannot dilute a false claim; "mean": the paper's 10·Σa/n
    faithfulness_rule: Literal["fixed_cost", "mean"] = "fixed_cost"
    unsupported_cost: float = Field(default=2.5, gt=0, le=10)
    #: "checklist" (default): the extracted key points, deduplicated, each marked covered /
    #: partly / not by the judge, 10·Σ/n; "holistic": the paper's one 0–10 coverage rating
    completeness_mode: Literal["checklist", "holistic"] = "checklist"
    #: checklist points marked per judge call
    checklist_batch_size: int = Field(default=20, ge=1, le=100)
    #: an answer with no grounded statement, no covered checklist point and a helpfulness at
    #: or below ``non_answer_helpfulness`` gets 0 on every dimension (``reward.scorer``)
    non_answer_floor: bool = True
    non_answer_helpfulness: float = Field(default=6.0, ge=0, le=10)
    #: how a verdict becomes a number: "integer" (the value the judge wrote, the paper) or
    #: "expected" (the expected value over the judge's token probabilities at the verdict,
    #: G-Eval's idea; asks the endpoint for log-probabilities and falls back to the integer,
    #: recorded per verdict, where it gives none). See docs/verdicts.md.
    verdicts: Literal["integer", "expected"] = "integer"

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed(data, "max_context_tokens", "max_document_tokens", "score")

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, v: list[str]) -> list[str]:
        check_dimension_names(v)
        if not v:
            raise ValueError("at least one dimension is needed")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _weights_match(self) -> ScoreOptions:
        if self.weights is not None:
            extra = set(self.weights) - set(self.dimensions)
            if extra:
                raise ValueError(f"weights given for dimensions not scored: {sorted(extra)}")
            if any(w < 0 for w in self.weights.values()):
                raise ValueError("weights must be ≥ 0")
            self.weights = {d: float(self.weights.get(d, 0.0)) for d in self.dimensions}
            if not any(self.weights.values()):
                raise ValueError("at least one weight must be > 0")
        return self


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML file into a dict (validated by the caller's model). An unreadable
    file is a ``ConfigError`` naming the file and, where the parser knows it, the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}{where}: not valid YAML: {problem}; check the "
                              "indentation and quoting there") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping at the top level")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` wins; nested mappings merge (CLI flags over a config file)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out
