"""``LlamaCppAPI``: a GGUF model run in this process through llama.cpp (``llama-cpp-python``).

For a judge or a policy on a laptop or a CPU-only machine, offline: ``--provider llama_cpp
--model path/to/model.gguf``. ``llama_cpp`` is imported on first use only (extra ``[gguf]``), so
``longreward`` imports without it, and naming this provider without it installed raises
``MissingDependencyError`` with the install command.

- **Structured replies.** A schema request is decoded under a grammar built from the reply's
  JSON schema, which is what llama-cpp-python does for ``response_format={"type":
  "json_object", "schema": ...}`` (the "json_object with schema" rung of the structured-output
  ladder). We build the grammar ourselves so that it is compiled once per schema, not on every
  call. The grammar fixes the shape (keys, types, enums); bounds such as ``maximum`` are not all
  expressible in it, so the client still validates the reply and re-asks, as for any endpoint.
- **Blocking calls.** llama.cpp decodes synchronously and one context serves one sequence at a
  time: the calls run as every in-process provider's do (``_local.LocalModelAPI``: a worker
  thread, one call at a time, the model loaded on first use).
- **n > 1.** llama.cpp has no ``n``: the n choices are drawn one after another (seed ``s + i``
  for choice ``i`` when a seed is given). Without a seed, llama.cpp reuses the prompt's KV
  cache between draws and between calls that share a prefix (the judge's instructions and
  document); with a seed the prompt is evaluated afresh for each draw, because a cached prefix
  gives slightly different floats and the same seed would not give the same text.
- **Token log-probabilities** (``verdicts: expected``): llama.cpp computes them only for a model
  loaded with ``logits_all`` (provider option ``logits_all=true``), which keeps a float per
  vocabulary entry for every position of the window (n_ctx × vocabulary × 4 bytes: 0.2 GB for
  SmolLM2 at n_ctx 1024, 5 GB for a 150k-vocabulary model at 8192). Without it, a request for
  them gets none, and the verdict is read as an integer (and the row says why). As on llama.cpp's
  server, they are the model's probabilities before the grammar.
- **Sampling.** llama-cpp-python's defaults add top-k 40, top-p 0.95 and min-p 0.05 on top of
  the temperature; we turn them off (unless ``top_p`` is asked for) so that "T = 1.0" means
  sampling from the model's distribution, as it does on the OpenAI-compatible servers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import UsageError
from .._registry import LLAMA_CPP_DEFAULT_N_CTX, import_requirement
from .._types import GenerateConfig, JsonSchema, ModelOutput, PermanentError, TokenLogprob, Usage
from ._local import DEFAULT_MAX_NEW_TOKENS, LocalModelAPI
from .openai_compatible import token_logprobs


class LlamaCppAPI(LocalModelAPI):
    """One GGUF model in this process.

    Options (``provider_options`` in a config file): ``n_ctx`` (context window in tokens; 0 =
    the window the model was trained with), ``n_threads`` (CPU threads; default: llama.cpp's
    choice), ``n_gpu_layers`` (layers offloaded to a GPU; -1 = all, 0 = CPU only),
    ``chat_format`` (override the chat template stored in the GGUF), ``seed`` (for calls that
    give none), ``logits_all`` (keep every position's logits: needed for token
    log-probabilities, see the module docstring), ``verbose`` (llama.cpp's own logging).
    """

    provider = "llama_cpp"
    # llama-cpp-python raises ValueError for a bad request, with "Requested tokens (N) exceed
    # context window of M" for a prompt that does not fit; RuntimeError when llama_decode fails.
    request_errors = (ValueError, RuntimeError)
    context_error_markers = ("context window",)
    context_hint = "raise the n_ctx provider option or shorten the prompt"
    constrains_decoding = True

    def __init__(
        self,
        model: str,
        *,
        n_ctx: int = LLAMA_CPP_DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        n_batch: int = 512,
        chat_format: str | None = None,
        seed: int | None = None,
        logits_all: bool = False,
        verbose: bool = False,
    ) -> None:
        super().__init__(model)
        path = Path(model).expanduser()
        if not path.is_file():
            raise UsageError(
                f"the llama_cpp provider runs a local GGUF file, and {model!r} is not a file; "
                "pass --model PATH/TO/MODEL.gguf"
            )
        if n_ctx < 0 or n_batch < 1:
            raise UsageError("llama_cpp options: n_ctx must be >= 0 and n_batch >= 1")
        self.path = path
        self.llama_args: dict[str, Any] = {
            "n_ctx": n_ctx,
            "n_threads": n_threads,
            "n_gpu_layers": n_gpu_layers,
            "n_batch": n_batch,
            "chat_format": chat_format,
            "logits_all": logits_all,
            "verbose": verbose,
        }
        if seed is not None:
            self.llama_args["seed"] = seed
        self._grammars: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading

    def _load(self) -> Any:
        llama_cpp = import_requirement(self.provider, "llama_cpp")
        try:
            return llama_cpp.Llama(model_path=str(self.path), **self.llama_args)
        except ValueError as exc:  # llama.cpp could not read the file
            raise PermanentError(f"llama.cpp cannot load {self.model!r}: {exc}; check that "
                                 "it is a GGUF model file") from exc

    def _release(self, engine: Any) -> None:
        if hasattr(engine, "close"):
            engine.close()

    def n_ctx(self) -> int:
        """The context window the loaded model runs with (loads the model)."""
        return self.with_engine(lambda llm: int(llm.n_ctx()))

    def _grammar(self, schema: JsonSchema) -> Any:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar

            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
            # bounded: a judge's schemas carry each request's verdict code (a ``const``), so
            # they differ per request; the reply models' own shapes are few
            while len(self._grammars) > 64:
                del self._grammars[next(iter(self._grammars))]
        return self._grammars[key]

    # ------------------------------------------------------------------ generation

    @staticmethod
    def _sampling(config: GenerateConfig) -> dict[str, Any]:
        return {
            "temperature": config.temperature,
            "top_p": 1.0 if config.top_p is None else config.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "max_tokens": config.max_tokens or DEFAULT_MAX_NEW_TOKENS,
            "stop": list(config.stop) if config.stop else None,
        }

    def _chat(self, engine: Any, messages: list[dict[str, str]], config: GenerateConfig,
              json_schema: JsonSchema | None) -> ModelOutput:
        kwargs = self._sampling(config)
        if json_schema is not None:
            kwargs["grammar"] = self._grammar(json_schema)
        if config.logprobs and self.llama_args["logits_all"]:
            kwargs.update(logprobs=True, top_logprobs=config.logprobs)
        return self._draws(engine, config, lambda seed: engine.create_chat_completion(
            messages, seed=seed, **kwargs), lambda choice: choice["message"].get("content"))

    def _complete(self, engine: Any, prompt: str, config: GenerateConfig) -> ModelOutput:
        kwargs = self._sampling(config)
        return self._draws(engine, config, lambda seed: engine.create_completion(
            prompt, seed=seed, **kwargs), lambda choice: choice.get("text"))

    def _draws(self, llm: Any, config: GenerateConfig, create: Any, text_of: Any) -> ModelOutput:
        # Greedy decoding gives n identical texts: compute one, copy it.
        draws = config.n if config.temperature > 0 else 1
        texts: list[str] = []
        logprobs: list[list[TokenLogprob] | None] = []
        reasons: list[str | None] = []
        usage = Usage()
        for i in range(draws):
            seed = None if config.seed is None else config.seed + i
            if seed is not None:
                # A prompt evaluated in one batch and one found in the KV cache differ in
                # the last float bits, which flips sampled tokens at T = 1: with a seed,
                # evaluate afresh so that the same seed gives the same text.
                llm.reset()
            reply = create(seed)
            choice = reply["choices"][0]
            texts.append(text_of(choice) or "")
            logprobs.append(token_logprobs(choice.get("logprobs")))
            reasons.append(choice.get("finish_reason"))
            u = reply.get("usage") or {}
            # One request, one prompt: counted once, as a server counts an ``n`` request.
            usage = usage + Usage(
                prompt_tokens=int(u.get("prompt_tokens", 0)) if i == 0 else 0,
                completion_tokens=int(u.get("completion_tokens", 0)),
            )
        if draws < config.n:
            texts, reasons, logprobs = texts * config.n, reasons * config.n, logprobs * config.n
        return ModelOutput(texts=texts, usage=usage, model=self.model, finish_reasons=reasons,
                           logprobs=logprobs if config.logprobs else None)
