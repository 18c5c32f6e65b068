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

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import EndpointOptions
from ..errors import RecordError
from ..io.files import (
    ResumableJsonlWriter,
    default_run_dir,
    iter_rows,
    write_rejected,
    write_rows,
)
from ..io.records import document_key
from ..store import TRANSPORT_KEYS, check_stage_settings
from .formats import DEFAULT_PROMPT_TEMPLATE, render_prompt

__all__ = [
    "PolicyOptions",
    "SampleOptions",
    "SampleSummary",
    "Truncation",
    "build_policy_client",
    "sample_file",
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
    #: the policy's context window in tokens; None = read it from a local model's config,
    #: else no truncation
    max_context_tokens: int | None = Field(None, ge=64)
    #: HF tokenizer (name or path) for counting and for completion-style chat templates;
    #: defaults to the model itself for the transformers and vllm providers
    tokenizer: str | None = None
    #: tokens reserved for the chat template's own tokens around the prompt
    template_overhead_tokens: int = Field(64, ge=0)
    field_id: str = "id"
    field_context: str = "context"
    field_query: str = "query"
    #: copy the document into every candidate row, so ``score`` can read the file on its own;
    #: off, rows carry only ``prompt_id`` and ``score --prompts`` joins the document back
    #: (N times less disk for N samples of a long document; ``run`` turns it off)
    include_context: bool = True
    #: prompts in flight at once (the client separately caps requests per endpoint)
    prompt_concurrency: int = Field(16, ge=1)

    @field_validator("prompt_template")
    @classmethod
    def _template_ok(cls, v: str) -> str:
        render_prompt("", "", v)  # raises on a template without $context and $query
        return v

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
    return policy.provider in ("transformers", "hf", "vllm")


def _hf_tokenizer(spec: str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("rendering a chat template", "transformers", "local") from exc
    return AutoTokenizer.from_pretrained(spec)


def _window_from_config(model: str) -> int | None:
    """The context window of a local HF model, from its config (no weights loaded)."""
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model)
    except Exception:  # noqa: BLE001 - any failure just means "unknown window"
        return None
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


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
                raise ValueError(
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


def _make_renderer(options: SampleOptions) -> _Renderer:
    from ..text.tokenizers import get_tokenizer

    policy = options.policy
    spec = options.tokenizer or (policy.model if _is_local(policy) else None)
    counter = get_tokenizer(spec)
    approximate = spec is None
    window = options.max_context_tokens
    if window is None and _is_local(policy):
        window = _window_from_config(policy.model)
        # An engine capped below the model's trained window (vLLM ``max_model_len``, often
        # lowered to fit the KV cache) rejects longer prompts outright: budget for the cap.
        po = policy.provider_options
        cap = po.get("max_model_len", (po.get("engine_args") or {}).get("max_model_len"))
        if isinstance(cap, int) and cap > 0:
            window = cap if window is None else min(window, cap)
    chat_tok = None
    if policy.style == "completion" and spec is not None:
        chat_tok = _hf_tokenizer(spec)
    return _Renderer(options, counter, approximate, window, chat_tok)


# --------------------------------------------------------------------------- running


@dataclass
class SampleSummary:
    prompts: int = 0  # good prompt rows read
    already_done: int = 0  # prompts complete before this run
    sampled: int = 0  # prompts completed in this run
    failed: dict[str, str] = field(default_factory=dict)  # prompt_id -> error
    candidates: int = 0  # rows written in this run
    duplicates: int = 0  # answers identical to an earlier answer of the same prompt
    truncated: int = 0  # prompts whose document was cut
    errors: list[RecordError] = field(default_factory=list)
    requests: int = 0  # requests sent to the model
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    window: int | None = None
    output: str = ""
    changed: int = 0  # prompts edited since they were sampled: their answers sampled again

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "already_done": self.already_done,
            "changed": self.changed,
            "sampled": self.sampled,
            "failed": len(self.failed),
            "candidates_written": self.candidates,
            "duplicates": self.duplicates,
            "truncated": self.truncated,
            "rejected_records": len(self.errors),
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "output": self.output,
        }


def _read_prompts(
    path: Path, options: SampleOptions, summary: SampleSummary
) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for label, item in iter_rows(path, id_field=options.field_id):
        if isinstance(item, RecordError):
            summary.errors.append(item)
            continue
        pid = item.get(options.field_id)
        ctx = item.get(options.field_context)
        query = item.get(options.field_query)
        if pid is None or isinstance(pid, bool) or str(pid).strip() == "":
            summary.errors.append(RecordError(label, options.field_id, "missing id (map it with --field-id)"))
            continue
        pid = str(pid)
        if not isinstance(ctx, str):
            summary.errors.append(RecordError(label, options.field_context, "missing or not a string (map it with --field-context)"))
            continue
        if not isinstance(query, str) or not query.strip():
            summary.errors.append(RecordError(label, options.field_query, "missing or empty (map it with --field-query)"))
            continue
        if pid in seen:
            summary.errors.append(RecordError(label, options.field_id, f"duplicate id {pid!r}; kept the first"))
            continue
        seen.add(pid)
        out.append((pid, ctx, query))
    return out


ProgressHook = Callable[[int], None]


async def _sample_prompt(
    pid: str,
    context: str,
    query: str,
    *,
    options: SampleOptions,
    renderer: _Renderer,
    client: Any,
    store: Any,
    writer: ResumableJsonlWriter,
    done_ids: set[str],
    summary: SampleSummary,
) -> None:
    from ..judge import GenerateConfig, Message, ModelError

    msgs, _sent_context, trunc = renderer.render(context, query)
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
        except ModelError as exc:
            summary.failed[pid] = f"{type(exc).__name__}: {exc}"
            return
        texts.extend(out.texts[:want])
        call += 1
    if len(texts) < options.n:
        summary.failed[pid] = f"the policy returned {len(texts)} of {options.n} answers"
        return
    first_seen: dict[str, str] = {}
    policy = {
        **options.policy.identity(),
        "temperature": options.temperature,
        "top_p": options.top_p,
        "max_new_tokens": options.max_new_tokens,
        "seed": options.seed,
    }
    for k, text in enumerate(texts):
        cid = f"{pid}-{k}"
        key = text.strip()
        dup = first_seen.get(key)
        if dup is None:
            first_seen[key] = cid
        else:
            summary.duplicates += 1
        if cid in done_ids:
            continue
        row = {
            "id": cid,
            "prompt_id": pid,
            "document": document_key(context),
            "query": query,
            "response": text,
            "sample_index": k,
            "policy": policy,
            "truncated": trunc.as_dict() if trunc else None,
            "duplicate_of": dup,
        }
        if options.include_context:
            # The original document: scoring judges against the full text even when the
            # policy only saw a truncated one.
            row = {"id": cid, "prompt_id": pid, "context": context, **row}
        store.record(STAGE, cid, row)
        if writer.write(row):
            summary.candidates += 1
    if trunc is not None:
        summary.truncated += 1
    summary.sampled += 1


async def sample_file(
    prompts_path: str | Path,
    output_path: str | Path,
    options: SampleOptions,
    *,
    run_dir: str | Path | None = None,
    client: Any | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_prompt: Callable[[str], None] | None = None,
) -> SampleSummary:
    """Sample ``options.n`` answers for every prompt of ``prompts_path`` into ``output_path``.

    Resumable: rerun with the same arguments after a crash and only missing work is done;
    a rerun with nothing left to do makes no model call. ``on_start(total, done_before)`` and
    ``on_prompt(prompt_id)`` drive a progress bar; ``client`` replaces the one built from
    ``options.policy`` (its cache is set to the run's store if it has none).
    """
    from ..store import RunStore

    started = time.perf_counter()
    output_path = Path(output_path)
    summary = SampleSummary(output=str(output_path))
    prompts = _read_prompts(Path(prompts_path), options, summary)
    summary.prompts = len(prompts)
    store = RunStore(Path(run_dir) if run_dir is not None else default_run_dir(output_path))
    writer = ResumableJsonlWriter(output_path)
    own_client = client is None
    try:
        check_stage_settings(store, STAGE, options.output_settings())
        stale = _stale_candidates(store, prompts)
        if stale:
            # Answers sampled for an earlier version of a prompt (edited document or
            # question) are dropped and sampled again, not kept next to the new prompt.
            store.forget(STAGE, stale)
            writer.close()
            write_rows(output_path, store.rows(STAGE))
            writer = ResumableJsonlWriter(output_path)
            summary.changed = len({cid.rsplit("-", 1)[0] for cid in stale})
        done_ids = store.finished_ids(STAGE)
        # The store is the record of what is done; the file may lag it by the rows of a run
        # killed between the two writes (or have been deleted): bring it up to date first.
        missing = done_ids - writer.written
        if missing:
            for row in store.rows(STAGE):
                if row["id"] in missing:
                    writer.write(row)
        todo = []
        for pid, ctx, query in prompts:
            if all(f"{pid}-{k}" in done_ids for k in range(options.n)):
                summary.already_done += 1
            else:
                todo.append((pid, ctx, query))
        write_rejected(output_path, summary.errors)
        if on_start:
            on_start(len(prompts), summary.already_done)
        if not todo:
            summary.seconds = time.perf_counter() - started
            return summary
        renderer = _make_renderer(options)
        summary.window = renderer.window
        if client is None:
            client = build_policy_client(options.policy, cache=store)
        elif client.cache is None:
            client.cache = store
        await _run_all(todo, options, renderer, client, store, writer, done_ids, summary, on_prompt)
        snap = client.snapshot()["by_tag"].get(STAGE, {})
        summary.requests = snap.get("requests", 0)
        summary.cache_hits = snap.get("cache_hits", 0)
        summary.prompt_tokens = snap.get("prompt_tokens", 0)
        summary.completion_tokens = snap.get("completion_tokens", 0)
    finally:
        writer.close()
        if own_client and client is not None:
            await client.aclose()
        store.close()
    summary.seconds = time.perf_counter() - started
    return summary


async def _run_all(
    todo: list[tuple[str, str, str]],
    options: SampleOptions,
    renderer: _Renderer,
    client: Any,
    store: Any,
    writer: ResumableJsonlWriter,
    done_ids: set[str],
    summary: SampleSummary,
    on_prompt: Callable[[str], None] | None,
) -> None:
    queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)

    async def worker() -> None:
        while True:
            try:
                pid, ctx, query = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await _sample_prompt(
                    pid, ctx, query, options=options, renderer=renderer, client=client,
                    store=store, writer=writer, done_ids=done_ids, summary=summary,
                )
            except ValueError as exc:  # e.g. no room for the document in the window
                summary.failed[pid] = str(exc)
            if on_prompt:
                on_prompt(pid)

    await asyncio.gather(*(worker() for _ in range(min(options.prompt_concurrency, len(todo)))))


def _stale_candidates(store: Any, prompts: list[tuple[str, str, str]]) -> list[str]:
    """Ids of finished candidates whose prompt (document or question) has changed since."""
    now = {pid: (document_key(ctx), query) for pid, ctx, query in prompts}
    stale = []
    for row in store.rows(STAGE):
        pid = str(row.get("prompt_id"))
        if pid in now and (row.get("document", now[pid][0]), row.get("query")) != now[pid]:
            stale.append(str(row["id"]))
    return stale
