"""``TransformersAPI``: a model run in this process through Hugging Face transformers.

Meant for small judges and policies on one machine, and for tests. torch and transformers are
imported on first use, not when this module is imported, so ``longreward`` stays importable
without the ``local`` extra. Generation is blocking: calls run as every in-process provider's
do (``_local.LocalModelAPI``: a worker thread, one generation at a time). Decoding is not
constrained to a JSON schema, so a schema request raises ``SchemaUnsupportedError`` and the
client switches to tagged text.
"""

from __future__ import annotations

from typing import Any

from .._registry import import_requirement
from .._types import GenerateConfig, JsonSchema, ModelOutput, PermanentError, Usage
from ._local import DEFAULT_MAX_NEW_TOKENS, LocalModelAPI


class TransformersAPI(LocalModelAPI):
    provider = "transformers"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__(model)
        self.device = device
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code

    # ------------------------------------------------------------------ loading

    def _load(self) -> tuple[Any, Any]:
        """``(model, tokenizer)``."""
        torch = import_requirement(self.provider, "torch")
        transformers = import_requirement(self.provider, "transformers")
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            self.model, trust_remote_code=self.trust_remote_code
        )
        dtype: Any = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
        # transformers renamed ``torch_dtype`` to ``dtype`` in 4.56; support both.
        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
        dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        model = transformers.AutoModelForCausalLM.from_pretrained(
            self.model, trust_remote_code=self.trust_remote_code, **{dtype_kw: dtype}
        )
        model.to(device)
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer

    # ------------------------------------------------------------------ generation

    def _chat(self, engine: tuple[Any, Any], messages: list[dict[str, str]],
              config: GenerateConfig, json_schema: JsonSchema | None) -> ModelOutput:
        _, tokenizer = engine
        if not getattr(tokenizer, "chat_template", None):
            raise PermanentError(
                f"the tokenizer of {self.model!r} has no chat template; "
                "use a chat model, or sample with the completion API"
            )
        prompt = tokenizer.apply_chat_template(messages, tokenize=False,
                                               add_generation_prompt=True)
        return self._complete(engine, prompt, config)

    def _complete(self, engine: tuple[Any, Any], prompt: str,
                  config: GenerateConfig) -> ModelOutput:
        torch = import_requirement(self.provider, "torch")
        model, tokenizer = engine
        # The chat template already holds the special tokens it wants.
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        prompt_len = int(encoded["input_ids"].shape[1])
        sample = config.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_tokens or DEFAULT_MAX_NEW_TOKENS,
            "do_sample": sample,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if sample:
            kwargs["temperature"] = config.temperature
            if config.top_p is not None:
                kwargs["top_p"] = config.top_p
            kwargs["num_return_sequences"] = config.n
        else:
            # Greedy decoding gives n identical texts: compute one, copy it.
            kwargs["temperature"] = None
            kwargs["top_p"] = None
            kwargs["top_k"] = None
        if config.seed is not None:
            torch.manual_seed(config.seed)  # under the lock, so no other generation interleaves
        with torch.no_grad():
            output = model.generate(**encoded, **kwargs)
        rows = output[:, prompt_len:]
        texts: list[str] = []
        reasons: list[str | None] = []
        completion_tokens = 0
        eos = tokenizer.eos_token_id
        for row in rows:
            ids = row.tolist()
            if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
                ids = [i for i in ids if i != tokenizer.pad_token_id]
            stopped = eos is not None and eos in ids
            if stopped:
                ids = ids[: ids.index(eos)]
            completion_tokens += len(ids)
            text = tokenizer.decode(ids, skip_special_tokens=True)
            text, hit_stop = _cut_at_stop(text, config.stop)
            texts.append(text)
            reasons.append("stop" if stopped or hit_stop else "length")
        if not sample and config.n > 1:
            texts, reasons = texts * config.n, reasons * config.n
        return ModelOutput(
            texts=texts,
            usage=Usage(prompt_tokens=prompt_len, completion_tokens=completion_tokens),
            model=self.model,
            finish_reasons=reasons,
        )


def _cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    if not stop:
        return text, False
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)
