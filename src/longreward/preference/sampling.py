"""Candidate answers from the policy: ``longreward sample``.

The paper (LongReward §3.3) samples 10 answers per long-context prompt from the SFT model at
temperature 1.0, scores them, and keeps the best and the worst as a DPO pair. This module is
the sampling half. It writes one row per answer, in exactly the flat shape ``longreward score``
reads: ``{"id": f"{prompt_id}-{k}", "prompt_id", "context", "query", "response",
"sample_index", "policy", "truncated", "duplicate_of"}``.

How it is built, and why:

- **One call path.** Every request goes through ``ModelClient`` (cache, retries, concurrency,
  rate limits); nothing here retries on its own. Completion-style sampling wraps a provider in
  ``_CompletionAPI`` so it takes the same path.
- **n in one request.** ``n_per_request=None`` asks for all N answers in one request (vLLM,
  SGLang and OpenAI honour ``n``, and the answers share one prefill). A server that ignores
  ``n`` returns fewer choices; the remainder is asked for in further requests, each with its own
  seed and cache slot, so N answers come back either way. ``n_per_request=1`` forces one
  request per answer.
- **Resume.** Each answer is recorded in the run store (stage ``sample``) before it is written
  to the output file. A rerun skips prompts whose N answers are recorded; for a prompt cut off
  half-way the same call sequence is replayed, completed calls come from the call cache, and
  only the missing requests reach the model.
- **Middle truncation.** A document longer than the policy's window is cut in the middle
  (head and tail kept, as LongAlign/LongBench do), because the question usually refers to the
  whole document and its beginning and end carry the most structure. The cut is recorded per
  row. Without the policy's tokenizer the count uses ``longreward.text``'s approximate
  tokenizer and the row says ``"approximate": true``.
- **Duplicates.** Identical answers to one prompt are kept (they are what the policy
  produced) but marked ``duplicate_of`` and counted, so a degenerate policy is visible.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import EndpointOptions, renamed
from ..io.records import FieldMap, Prompt
from ..judge import provider_spec
from ..store import TRANSPORT_KEYS
from ..text.tokenizers import pretrained_source, trained_window
from .formats import DEFAULT_PROMPT_TEMPLATE, check_prompt_template, render_prompt

logger = logging.getLogger(__name__)

__all__ = [
    "PolicyOptions",
    "SampleOptions",
    "SampledPrompt",
    "SamplingFailed",
    "Truncation",
    "build_policy_client",
    "make_renderer",
    "sample_prompt",
    "truncate_middle",
]

STAGE = "sample"
TRUNCATION_MARKER = "\n...\n"


class PolicyOptions(EndpointOptions):
    """How to reach the policy (the SFT model being sampled)."""

    model: str | None = Field("policy", description="served model name, HF name or local path")
    style: Literal["chat", "completion"] = "chat"
    timeout: float = Field(600.0, gt=0)

    def identity(self) -> dict[str, Any]:
        """What each output row records about the policy (no URLs, no secrets)."""
        return {"provider": self.provider, "model": self.model, "style": self.style}


_OLD_FIELD_KEYS = {"field_id": "id", "field_context": "context", "field_query": "query"}


class SampleOptions(BaseModel):
    """Options of ``longreward sample`` and the ``sample:`` section of a run config."""

    model_config = ConfigDict(extra="forbid")

    policy: PolicyOptions = Field(default_factory=PolicyOptions)
    n: int = Field(10, ge=1, description="answers per prompt (paper: 10)")
    temperature: float = Field(1.0, ge=0, description="paper: 1.0")
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int = Field(1024, ge=1)
    seed: int | None = None
    stop: list[str] | None = None
    #: answers asked for per request; None = all N at once with ``n=``
    n_per_request: int | None = Field(None, ge=1)
    system_prompt: str | None = None
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    #: the policy's context window in tokens: longer documents are cut in the middle to fit;
    #: None = read it from a local model's config, else no truncation. (Not ``score``'s
    #: ``max_document_tokens``, which rejects documents.)
    context_window: int | None = Field(None, ge=64)
    #: HF tokenizer (name or path) for counting and for completion-style chat templates;
    #: defaults to the model itself for the transformers and vllm providers
    tokenizer: str | None = None
    #: tokens reserved for the chat template's own tokens around the prompt
    template_overhead_tokens: int = Field(64, ge=0)
    #: field names of the prompts file; the same map serves every stage that reads it
    fields: FieldMap = Field(default_factory=FieldMap)
    #: copy the document into every candidate row, so ``score`` can read the file on its own;
    #: off, rows carry only ``prompt_id`` and ``score --prompts`` joins the document back
    #: (N times less disk for N samples of a long document; ``run`` turns it off)
    include_context: bool = True
    #: prompts in flight at once (the client separately caps requests per endpoint)
    prompt_concurrency: int = Field(16, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        data = renamed(data, "max_context_tokens", "context_window", "sample")
        # 0.1 spelt the prompts file's field names as three flat options here and as a
        # ``fields`` map in ``score``; one map now, the flat ones accepted for one release.
        if isinstance(data, dict) and any(k in data for k in _OLD_FIELD_KEYS):
            import warnings

            warnings.warn("sample.field_id/field_context/field_query are now sample.fields "
                          "(or a top-level fields map in a run config)", DeprecationWarning,
                          stacklevel=2)
            fields = dict(data.get("fields") or {})
            for old, new in _OLD_FIELD_KEYS.items():
                if old in data:
                    fields.setdefault(new, data[old])
            data = {k: v for k, v in data.items() if k not in _OLD_FIELD_KEYS}
            data["fields"] = fields
        return data

    @field_validator("prompt_template")
    @classmethod
    def _template_ok(cls, v: str) -> str:
        return check_prompt_template(v)

    def output_settings(self) -> dict[str, Any]:
        """The settings that decide which answers come out (not where or how fast they are
        fetched): a resumed run must use the same ones, see :func:`check_stage_settings`."""
        data = self.model_dump(mode="json", exclude={"prompt_concurrency"})
        for key in TRANSPORT_KEYS:
            data["policy"].pop(key, None)
        return data


# --------------------------------------------------------------------------- truncation


@dataclass
class Truncation:
    """What middle truncation did to one document (``None`` in a row: nothing was cut)."""

    original_tokens: int
    kept_tokens: int
    limit_tokens: int
    tokenizer: str
    approximate: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "original_tokens": self.original_tokens,
            "kept_tokens": self.kept_tokens,
            "removed_tokens": self.original_tokens - self.kept_tokens,
            "limit_tokens": self.limit_tokens,
            "tokenizer": self.tokenizer,
            "approximate": self.approximate,
        }


def truncate_middle(
    text: str, max_tokens: int, tokenizer: Any, *, marker: str = TRUNCATION_MARKER,
    approximate: bool = False,
) -> tuple[str, Truncation | None]:
    """Keep the first and last ``max_tokens // 2`` tokens of ``text``; cut the middle.

    ``tokenizer`` is a ``longreward.text.tokenizers.Tokenizer`` (``spans`` gives character
    offsets, so the cut falls on token boundaries and no token is split).
    """
    spans = tokenizer.spans(text)
    if len(spans) <= max_tokens:
        return text, None
    head = max(max_tokens // 2, 0)
    tail = max(max_tokens - head, 0)
    head_end = spans[head - 1][1] if head else 0
    tail_start = spans[len(spans) - tail][0] if tail else len(text)
    cut = text[:head_end] + marker + text[tail_start:]
    return cut, Truncation(
        original_tokens=len(spans),
        kept_tokens=head + tail,
        limit_tokens=max_tokens,
        tokenizer=str(getattr(tokenizer, "name", type(tokenizer).__name__)),
        approximate=approximate,
    )


# --------------------------------------------------------------------------- policy plumbing


def _completion_api_class() -> type:
    from ..judge import ModelAPI

    class _CompletionAPI(ModelAPI):
        """Routes ``generate`` to the wrapped provider's ``complete_text``: the one user
        message holds the fully rendered prompt (chat template already applied), so completion
        sampling goes through ``ModelClient`` like everything else."""

        def __init__(self, inner: Any) -> None:
            super().__init__(inner.model)
            self.inner = inner
            self.provider = inner.provider

        async def generate(self, messages: Any, config: Any, json_schema: Any = None) -> Any:
            return await self.inner.complete_text(messages[-1].content, config)

        def max_connections(self) -> int:
            return self.inner.max_connections()

        def cache_identity(self) -> dict[str, Any]:
            return {**self.inner.cache_identity(), "style": "completion"}

        async def aclose(self) -> None:
            await self.inner.aclose()

    return _CompletionAPI


def build_policy_client(policy: PolicyOptions, *, cache: Any = None) -> Any:
    """The ``ModelClient`` for the policy (the one call path: cache, retries, limits)."""
    apis = policy.create_apis("policy")
    if policy.style == "completion":
        wrapper = _completion_api_class()
        apis = [wrapper(a) for a in apis]
    return policy.client(apis, cache=cache)


def _is_local(policy: PolicyOptions) -> bool:
    """The policy runs here, so its tokenizer and window can be read from the model."""
    return provider_spec(policy.provider).local


def _hf_tokenizer(spec: str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("rendering a chat template", "transformers", "local") from exc
    location, kwargs = pretrained_source(spec)
    return AutoTokenizer.from_pretrained(location, **kwargs)


def _window_from_config(model: str) -> int | None:
    """The context window of a local HF model or GGUF file, from its config (no weights
    loaded)."""
    try:
        from transformers import AutoConfig

        location, kwargs = pretrained_source(model)
        cfg = AutoConfig.from_pretrained(location, **kwargs)
    except Exception:  # noqa: BLE001 - any failure just means "unknown window"
        return None
    found = trained_window(cfg)
    return found[1] if found else None


def _model_tokenizer(policy: PolicyOptions) -> str | None:
    """The policy's own tokenizer, when it runs here and can be read; else ``None`` (the
    approximate count). It is read through transformers, which a local engine's extra alone
    may not install (``[gguf]`` does not)."""
    if not _is_local(policy) or importlib.util.find_spec("transformers") is None:
        return None
    return policy.model


def _engine_window(policy: PolicyOptions) -> int | None:
    """The window the engine runs with when it is set below the model's trained one: it
    rejects longer prompts outright, so the budget is for it. vLLM's ``max_model_len`` is
    often lowered to fit the KV cache; llama.cpp's ``n_ctx`` has a small default (0 there
    means the trained window). Which option sets it is the provider registry's knowledge."""
    return provider_spec(policy.provider).engine_window(policy.provider_options)


@dataclass
class _Renderer:
    """Turns (context, query) into the request: messages for chat style, or one text with the
    policy's chat template applied for completion style. Also truncates the document."""

    options: SampleOptions
    counter: Any  # longreward.text Tokenizer, for counting
    approximate: bool
    window: int | None
    chat_tokenizer: Any | None  # HF tokenizer with a chat template (completion style)

    def messages(self, context: str, query: str) -> list[dict[str, str]]:
        msgs = []
        if self.options.system_prompt:
            msgs.append({"role": "system", "content": self.options.system_prompt})
        msgs.append({"role": "user", "content": render_prompt(context, query, self.options.prompt_template)})
        return msgs

    def budget(self, query: str) -> int | None:
        if self.window is None:
            return None
        fixed = self.counter.count(render_prompt("", query, self.options.prompt_template))
        if self.options.system_prompt:
            fixed += self.counter.count(self.options.system_prompt)
        fixed += self.counter.count(TRUNCATION_MARKER) + self.options.template_overhead_tokens
        return self.window - self.options.max_new_tokens - fixed

    def render(self, context: str, query: str) -> tuple[list[dict[str, str]], str, Truncation | None]:
        budget = self.budget(query)
        trunc = None
        if budget is not None:
            if budget < 1:
                raise NoRoomError(
                    f"the question, template and {self.options.max_new_tokens} new tokens "
                    f"leave no room for the document in a {self.window}-token window; "
                    "lower max_new_tokens"
                )
            context, trunc = truncate_middle(context, budget, self.counter, approximate=self.approximate)
        msgs = self.messages(context, query)
        if self.options.policy.style == "chat":
            return msgs, context, trunc
        if self.chat_tokenizer is not None and getattr(self.chat_tokenizer, "chat_template", None):
            text = self.chat_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        else:
            # A base model without a chat template: the layout itself is the prompt.
            text = "\n\n".join(m["content"] for m in msgs)
        return [{"role": "user", "content": text}], context, trunc


def make_renderer(options: SampleOptions) -> _Renderer:
    """The request renderer (layout, chat template, truncation) for ``options``."""
    from ..text.tokenizers import get_tokenizer

    policy = options.policy
    spec = options.tokenizer or _model_tokenizer(policy)
    counter = get_tokenizer(spec)
    if spec is not None and not options.tokenizer:
        # The policy's own tokenizer is a refinement, not a requirement (transformers cannot
        # read every GGUF architecture, for one): if it does not load, count approximately.
        try:
            counter.count("a")
        except Exception as exc:  # noqa: BLE001 - any failure means "use the approximation"
            from .._util.text import short

            logger.warning("sample: cannot load the tokenizer of %s (%s); counting tokens "
                           "approximately to fit the window", spec,
                           short(str(exc) or type(exc).__name__, 200))
            spec = None
            counter = get_tokenizer(None)
    approximate = spec is None
    window = options.context_window
    if window is None and _is_local(policy):
        cap = _engine_window(policy)
        # llama.cpp runs with exactly n_ctx, even above the trained window (its choice, and
        # reading a GGUF's config costs seconds); other engines are capped below it.
        exact = cap is not None and provider_spec(policy.provider).window_is_exact
        trained = None if exact else _window_from_config(policy.model)
        window = min((w for w in (trained, cap) if w is not None), default=None)
    chat_tok = None
    if policy.style == "completion" and spec is not None:
        chat_tok = _hf_tokenizer(spec)
    return _Renderer(options, counter, approximate, window, chat_tok)


# --------------------------------------------------------------------------- one prompt


class NoRoomError(ValueError):
    """The question, template and answer budget leave no room for the document."""


class SamplingFailed(Exception):
    """A prompt's answers could not be had (the policy failed, or the document cannot fit):
    the prompt is counted as failed and the run goes on."""


@dataclass
class SampledPrompt:
    """The rows of one prompt's answers (in the flat shape ``score`` reads)."""

    rows: list[dict[str, Any]]
    duplicates: int
    truncation: Truncation | None


async def sample_prompt(prompt: Prompt, *, options: SampleOptions, renderer: _Renderer,
                        client: Any) -> SampledPrompt:
    """``options.n`` answers to one prompt. Plain: no file or store handling (the stage
    commits the rows). Raises ``SamplingFailed`` when the answers cannot be had."""
    from ..judge import GenerateConfig, JudgeFatalError, Message, ModelError

    try:
        msgs, _sent_context, trunc = renderer.render(prompt.context, prompt.query)
    except NoRoomError as exc:
        raise SamplingFailed(str(exc)) from None
    messages = [Message(role=m["role"], content=m["content"]) for m in msgs]  # type: ignore[arg-type]
    texts: list[str] = []
    call = 0
    # A server that returns no choices at all must not loop forever: N+2 calls at most.
    while len(texts) < options.n and call < options.n + 2:
        want = options.n - len(texts)
        if options.n_per_request is not None:
            want = min(want, options.n_per_request)
        config = GenerateConfig(
            temperature=options.temperature,
            max_tokens=options.max_new_tokens,
            top_p=options.top_p,
            n=want,
            # Each request of a prompt gets its own seed, or N one-answer requests would all
            # return the same answer from a seeded server.
            seed=None if options.seed is None else options.seed + call,
            stop=options.stop,
        )
        try:
            out = await client.generate(messages, config, tag=STAGE, attempt=call)
        except JudgeFatalError:
            raise  # fatal for the run (e.g. the policy endpoint refuses our key)
        except ModelError as exc:
            raise SamplingFailed(f"{type(exc).__name__}: {exc}") from None
        texts.extend(out.texts[:want])
        call += 1
    if len(texts) < options.n:
        raise SamplingFailed(f"the policy returned {len(texts)} of {options.n} answers")
    first_seen: dict[str, str] = {}
    policy = {
        **options.policy.identity(),
        "temperature": options.temperature,
        "top_p": options.top_p,
        "max_new_tokens": options.max_new_tokens,
        "seed": options.seed,
    }
    rows = []
    duplicates = 0
    for k, text in enumerate(texts):
        cid = answer_id(prompt.id, k)
        key = text.strip()
        dup = first_seen.get(key)
        if dup is None:
            first_seen[key] = cid
        else:
            duplicates += 1
        row: dict[str, Any] = {"id": cid, "prompt_id": prompt.id}
        if options.include_context:
            # The original document: scoring judges against the full text even when the
            # policy only saw a truncated one.
            row["context"] = prompt.context
        row.update({
            "document": prompt.document_key,
            "query": prompt.query,
            "response": text,
            "sample_index": k,
            "policy": policy,
            "truncated": trunc.as_dict() if trunc else None,
            "duplicate_of": dup,
        })
        rows.append(row)
    return SampledPrompt(rows, duplicates, trunc)


def answer_id(prompt_id: str, k: int) -> str:
    """The id of a prompt's k-th answer."""
    return f"{prompt_id}-{k}"
