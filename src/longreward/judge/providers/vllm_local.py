"""``VLLMAPI``: a model run in this process through vLLM's offline ``LLM`` engine.

For sampling many candidates on a GPU node without starting a server. ``vllm`` is imported on
first use only, so ``longreward`` imports without the ``vllm`` extra, and naming this provider
without it installed raises ``MissingDependencyError`` with the install command.

vLLM's engine is synchronous and batches internally, so each request runs as every in-process
provider's does (``_local.LocalModelAPI``: a worker thread, one engine call at a time); ``n`` is
passed as ``SamplingParams.n`` so the n samples share the prompt's KV cache. Schema-constrained
decoding is not wired here: a schema request raises ``SchemaUnsupportedError`` and the client
falls back to tagged text, as for the transformers provider. Serve the judge with ``vllm
serve`` and use ``openai_compatible`` when structured output matters.
"""

from __future__ import annotations

from typing import Any

from .._registry import import_requirement
from .._types import GenerateConfig, JsonSchema, ModelOutput, Usage
from ._local import DEFAULT_MAX_NEW_TOKENS, LocalModelAPI


class VLLMAPI(LocalModelAPI):
    provider = "vllm"
    # vLLM raises ValueError for prompts longer than max_model_len and for bad parameters;
    # neither gets better by retrying.
    request_errors = (ValueError,)
    context_error_markers = ("longer than", "max_model_len", "too long")

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
        self.engine_args: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "trust_remote_code": trust_remote_code,
            **(engine_args or {}),
        }
        if max_model_len is not None:
            self.engine_args["max_model_len"] = max_model_len

    def _load(self) -> Any:
        return import_requirement(self.provider, "vllm").LLM(model=self.model, **self.engine_args)

    def tokenizer(self) -> Any:
        """The engine's tokenizer (loads the engine)."""
        return self.with_engine(lambda llm: llm.get_tokenizer())

    def _params(self, config: GenerateConfig) -> Any:
        kwargs: dict[str, Any] = {
            "n": config.n,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens or DEFAULT_MAX_NEW_TOKENS,
        }
        if config.top_p is not None:
            kwargs["top_p"] = config.top_p
        if config.seed is not None:
            kwargs["seed"] = config.seed
        if config.stop:
            kwargs["stop"] = list(config.stop)
        return import_requirement(self.provider, "vllm").SamplingParams(**kwargs)

    def _chat(self, engine: Any, messages: list[dict[str, str]], config: GenerateConfig,
              json_schema: JsonSchema | None) -> ModelOutput:
        return self._output(engine.chat(messages, self._params(config), use_tqdm=False))

    def _complete(self, engine: Any, prompt: str, config: GenerateConfig) -> ModelOutput:
        return self._output(engine.generate([prompt], self._params(config), use_tqdm=False))

    def _output(self, results: Any) -> ModelOutput:
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
