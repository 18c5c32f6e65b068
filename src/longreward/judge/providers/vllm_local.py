"""``VLLMAPI``: a model run in this process through vLLM's offline ``LLM`` engine.

For sampling many candidates on a GPU node without starting a server. ``vllm`` is imported on
first use only, so ``longreward`` imports without the ``vllm`` extra, and naming this provider
without it installed raises ``MissingDependencyError`` with the install command.

vLLM's engine is synchronous and batches internally, so each request runs in a worker thread
under a lock (one engine call at a time); ``n`` is passed as ``SamplingParams.n`` so the n
samples share the prompt's KV cache. Schema-constrained decoding is not wired here: a schema
request raises ``SchemaUnsupportedError`` and the client falls back to tagged text, as for the
transformers provider. Serve the judge with ``vllm serve`` and use ``openai_compatible`` when
structured output matters.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ...errors import MissingDependencyError
from .._provider import ModelAPI
from .._types import (
    ContextTooLongError,
    GenerateConfig,
    JsonSchema,
    Message,
    ModelOutput,
    PermanentError,
    SchemaUnsupportedError,
    Usage,
)

_DEFAULT_MAX_NEW_TOKENS = 512


def _require_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError("in-process vLLM", "vllm", "vllm") from exc
    return vllm


class VLLMAPI(ModelAPI):
    provider = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        trust_remote_code: bool = False,
        engine_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model)
        # Fail at construction, not at the first request, so a run does not start only to
        # crash once the prompts are read.
        _require_vllm()
        self.engine_args: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "trust_remote_code": trust_remote_code,
            **(engine_args or {}),
        }
        if max_model_len is not None:
            self.engine_args["max_model_len"] = max_model_len
        self._llm: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VLLMAPI(model={self.model!r})"

    def max_connections(self) -> int:
        return 1  # the engine batches internally; one call at a time from here

    def _engine(self) -> Any:
        if self._llm is None:
            vllm = _require_vllm()
            self._llm = vllm.LLM(model=self.model, **self.engine_args)
        return self._llm

    def tokenizer(self) -> Any:
        """The engine's tokenizer (loads the engine)."""
        with self._lock:
            return self._engine().get_tokenizer()

    @staticmethod
    def _params(config: GenerateConfig) -> Any:
        vllm = _require_vllm()
        kwargs: dict[str, Any] = {
            "n": config.n,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens or _DEFAULT_MAX_NEW_TOKENS,
        }
        if config.top_p is not None:
            kwargs["top_p"] = config.top_p
        if config.seed is not None:
            kwargs["seed"] = config.seed
        if config.stop:
            kwargs["stop"] = list(config.stop)
        return vllm.SamplingParams(**kwargs)

    async def generate(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
    ) -> ModelOutput:
        if json_schema is not None:
            raise SchemaUnsupportedError("the in-process vllm provider does not constrain decoding")
        convo = [m.model_dump() for m in messages]
        return await asyncio.to_thread(self._run, "chat", convo, config)

    async def complete_text(self, prompt: str, config: GenerateConfig) -> ModelOutput:
        return await asyncio.to_thread(self._run, "generate", prompt, config)

    def _run(self, method: str, payload: Any, config: GenerateConfig) -> ModelOutput:
        with self._lock:
            llm = self._engine()
            params = self._params(config)
            try:
                if method == "chat":
                    results = llm.chat(payload, params, use_tqdm=False)
                else:
                    results = llm.generate([payload], params, use_tqdm=False)
            except ValueError as exc:
                # vLLM raises ValueError for prompts longer than max_model_len and for bad
                # parameters; neither gets better by retrying.
                text = str(exc)
                if "longer than" in text or "max_model_len" in text or "too long" in text:
                    raise ContextTooLongError(text) from exc
                raise PermanentError(text) from exc
        result = results[0]
        outs = sorted(result.outputs, key=lambda o: o.index)
        prompt_tokens = len(result.prompt_token_ids or [])
        return ModelOutput(
            texts=[o.text for o in outs],
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=sum(len(o.token_ids or []) for o in outs),
                cached_tokens=int(getattr(result, "num_cached_tokens", 0) or 0),
            ),
            model=self.model,
            finish_reasons=[o.finish_reason for o in outs],
        )

    async def aclose(self) -> None:
        with self._lock:
            self._llm = None
