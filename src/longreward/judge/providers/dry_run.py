"""``DryRunAPI``: an offline, deterministic stand-in for a model. Not an LLM.

It lets a user run the whole pipeline (score, sample, pairs) without a judge, to check inputs,
plumbing and outputs before paying for calls. Its scores are placeholders derived from a hash
of the prompt; every output made with it should carry ``DRY_RUN_BANNER``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

from .._provider import ModelAPI
from .._schema_instance import schema_instance, sentences_of
from .._types import GenerateConfig, JsonSchema, Message, ModelOutput, Usage

DRY_RUN_BANNER = (
    "DRY RUN: these scores come from longreward's deterministic dry-run provider. They are "
    "placeholders derived from a hash of the prompt, not judgments by a model."
)

#: Strings in a JSON reply are drawn from the last this-many sentences of the last user
#: message: prompts put the candidate answer last, so "statements" resemble the answer.
_TAIL_SENTENCES = 12


def _seed(*parts: object) -> int:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:8], "big")


def _estimate(text: str) -> int:
    return max(1, len(text) // 4)


def reply_sentences(messages: list[Message]) -> list[str]:
    """Sentences to build replies from, preferring the end of the last user message."""
    users = [m.content for m in messages if m.role == "user"]
    source = users[-1] if users else (messages[-1].content if messages else "")
    # Prompts wrap their inputs in tags (<answer>…</answer>) and may end with a reminder
    # line; the content of the last tagged block is the candidate, so draw from it.
    blocks = re.findall(r"<([a-z_]+)[^>]*>\s*(.*?)\s*</\1>", source, flags=re.S)
    if blocks and blocks[-1][1].strip():
        source = blocks[-1][1]
    found = sentences_of(source)[-_TAIL_SENTENCES:]
    if not found:
        found = sentences_of(" ".join(m.content for m in messages))[-_TAIL_SENTENCES:]
    return found or ["No text was given."]


def texts_from(sentences: list[str], seed: int, n: int) -> list[str]:
    """``n`` distinct deterministic texts of 2-4 sentences each."""
    out: list[str] = []
    for i in range(n):
        rng = random.Random(seed + i)
        k = min(len(sentences), rng.randint(2, 4))
        text = " ".join(rng.sample(sentences, k)) if k else "No text was given."
        if text in out:  # few sentences to pick from: keep the n samples distinct anyway
            text = f"{text} (variant {i + 1})"
        out.append(text)
    return out


class DryRunAPI(ModelAPI):
    provider = "dry_run"

    def __init__(self, model: str = "dry-run") -> None:
        super().__init__(model)

    def max_connections(self) -> int:
        return 64

    async def generate(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
    ) -> ModelOutput:
        seed = _seed([m.model_dump() for m in messages], config.model_dump(), json_schema)
        sentences = reply_sentences(messages)
        if json_schema is not None:
            texts = [
                json.dumps(
                    schema_instance(json_schema, random.Random(seed + i), sentences),
                    ensure_ascii=False,
                )
                for i in range(config.n)
            ]
        else:
            texts = texts_from(sentences, seed, config.n)
        return self._output("".join(m.content for m in messages), texts)

    async def complete_text(self, prompt: str, config: GenerateConfig) -> ModelOutput:
        seed = _seed(prompt, config.model_dump())
        sentences = sentences_of(prompt)[-_TAIL_SENTENCES:] or ["No text was given."]
        return self._output(prompt, texts_from(sentences, seed, config.n))

    def _output(self, prompt: str, texts: list[str]) -> ModelOutput:
        return ModelOutput(
            texts=texts,
            usage=Usage(prompt_tokens=_estimate(prompt),
                        completion_tokens=sum(_estimate(t) for t in texts)),
            model=self.model,
            finish_reasons=["stop"] * len(texts),
        )
