"""Listwise selection against human labels, with any judge: per prompt of an agreement data
file, the listwise verdict on each labelled pair, its calls, tokens and wall time, and how
often the two orders agreed.

It runs listwise selection only, so a slow judge can be measured on a few prompts without
paying for the pointwise reward (which ``longreward eval agreement --listwise`` also
computes, on the same pairs, in one table). Calls are cached in ``--run-dir`` (a rerun sends
nothing).

    python benchmarks/listwise_agreement.py ../shared/data/longeval_pubmed/faithfulness_human.jsonl \\
        --label-field human_faithfulness --prompts article_4,article_15 \\
        --base-url http://127.0.0.1:8017/v1 --model qwen2.5-coder-1.5b-instruct \\
        --run-dir /tmp/listwise.run -o /tmp/listwise.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from longreward import ListwiseOptions, ScoreOptions, judge_settings, select_listwise  # noqa: E402
from longreward.eval._run import cached_calls  # noqa: E402
from longreward.eval._stats import credit  # noqa: E402
from longreward.eval.agreement import (  # noqa: E402
    AgreementOptions,
    read_agreement_data,
    select_prompts,
)
from longreward.reward.scorer import build_client  # noqa: E402


async def main(args: argparse.Namespace) -> dict:
    agreement = AgreementOptions(label_field=args.label_field,
                                 prompts=args.prompts.split(",") if args.prompts else None,
                                 limit=args.limit)
    data, _ = select_prompts(read_agreement_data(args.data, agreement), agreement)
    options = ScoreOptions.model_validate({"judge": {
        "provider": "dry_run" if args.dry_run else "openai_compatible", "model": args.model,
        "base_urls": [args.base_url] if args.base_url else [], "timeout": args.timeout,
        "max_concurrency": args.concurrency}})
    client = build_client(options)
    settings = judge_settings(client, options)
    listwise = ListwiseOptions(group_size=args.group_size,
                               max_prompt_tokens=args.max_prompt_tokens)
    per_prompt = []
    verdicts = []
    Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    try:
        with cached_calls(client, args.run_dir):
            for rec in data.records:
                pairs = [p for p in data.pairs if p.prompt_id == rec.prompt_id
                         and p.label != "tie"]
                if not pairs:
                    continue
                started = time.perf_counter()
                sel = await select_listwise(settings, context=rec.context, query=rec.query,
                                            answers=[c.response for c in rec.candidates],
                                            options=listwise)
                seconds = time.perf_counter() - started
                ids = [c.id for c in rec.candidates]
                got = []
                for p in pairs:
                    a, b = ids.index(p.a), ids.index(p.b)
                    v = sel.verdict(a, b)
                    verdicts.append((v, p.label))
                    got.append({"pair": p.id, "human": p.label, "listwise": v,
                                "orders": sel.orders(a, b)})
                agreed, asked = sel.position_consistency
                row = {"prompt": rec.prompt_id, "answers": len(ids), "pairs": got,
                       "skip": sel.skip, "reason": sel.reason, "orders_agreed": agreed,
                       "orders_asked": asked, "views": sorted({g.view for r in sel.rounds
                                                               for g in r}),
                       "seconds": round(seconds, 1), **sel.usage}
                per_prompt.append(row)
                print(json.dumps(row), flush=True)
    finally:
        await client.aclose()
    counted = [credit(v, label, "half") for v, label in verdicts]
    scored = [c for c in counted if c is not None]
    total = {k: sum(r.get(k, 0) for r in per_prompt)
             for k in ("calls", "prompt_tokens", "completion_tokens", "seconds")}
    summary = {"pairs": len(verdicts), "accuracy_ties_half": (sum(scored) / len(scored)
                                                              if scored else None),
               "agree": sum(1 for v, label in verdicts if v == label),
               "disagree": sum(1 for v, label in verdicts if v in ("a", "b") and v != label),
               "ties": sum(1 for v, _ in verdicts if v == "tie"),
               "no_verdict": sum(1 for v, _ in verdicts if v is None),
               "orders_agreed": sum(r["orders_agreed"] for r in per_prompt),
               "orders_asked": sum(r["orders_asked"] for r in per_prompt), **total,
               "judge": {"model": args.model, "dry_run": args.dry_run},
               "listwise": listwise.model_dump(), "prompts": per_prompt}
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--label-field", default="label")
    ap.add_argument("--prompts", default=None, help="comma-separated prompt ids")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--model", default="dry-run")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-prompt-tokens", type=int, default=None)
    ap.add_argument("--run-dir", default="listwise.run")
    ap.add_argument("-o", "--output", default=None)
    out = asyncio.run(main(ap.parse_args()))
    print(json.dumps({k: v for k, v in out.items() if k != "prompts"}, indent=2))
