"""The reward-calling code of RL trainers that do not install on a CPU (they need CUDA, vLLM,
DeepSpeed, SGLang), reproduced from their sources as our own code: what each trainer sends
to a reward service, and what it does with the reply up to each sample's advantage. Every
function names the file it follows. The tensor operations are the trainers' own (torch), so
a reply they cannot take fails here the way it fails there.

- OpenRLHF 0.9.1 and later (0.11.2 read): one sample per request, the prompt's token ids cut
  from the left when they do not fit, ``torch.tensor([reward])``, group normalisation.
- OpenRLHF 0.9.0: one request for the whole batch, the prompt cut from the right by the
  tokenizer, ``torch.as_tensor(rewards)``.
- slime (THUDM/slime, 2026-08 read): one sample per request, the reply dict's ``reward`` key,
  group normalisation.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Experience:
    """The parts of OpenRLHF's ``Experience`` a reward reaches."""

    rewards: torch.Tensor | None
    scores: torch.Tensor | None
    info: dict[str, torch.Tensor] = field(default_factory=dict)
    query: str = ""


# --------------------------------------------------------------------------- OpenRLHF 0.9.1+


async def _openrlhf_post(session_timeout: float, url: str, payload: dict[str, Any],
                         tries: int = 5) -> dict[str, Any]:
    # openrlhf/utils/agent.py, SingleTurnAgentExecutor._fetch_rewards_via_http._post_request:
    # a new aiohttp session per try, ClientTimeout(total=180), raise_for_status, 1 s apart.
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=session_timeout)
    for _ in range(tries):
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(url, json=payload) as response:
                response.raise_for_status()
                return await response.json()
        except Exception:  # noqa: BLE001 - OpenRLHF logs and retries every error
            pass
        await asyncio.sleep(1)
    raise RuntimeError(f"Request error for {tries} times")


async def openrlhf_sample(url: str, tokenizer: Any, prompt: str, label: Any, response: str, *,
                          max_len: int = 2048, max_new_tokens: int | None = None,
                          timeout: float = 180.0) -> Experience:
    """One rollout sample's reward as OpenRLHF 0.9.1+ gets it."""
    # openrlhf/utils/agent.py, SingleTurnAgentExecutor.execute
    prompt_token_ids = tokenizer(text=prompt, add_special_tokens=False,
                                 return_tensors="pt")["input_ids"][0].tolist()
    max_tokens = max_new_tokens if max_new_tokens is not None else max(
        1, max_len - len(prompt_token_ids))
    max_prompt_length = max_len - max_tokens
    if len(prompt_token_ids) > max_prompt_length:
        prompt_token_ids = prompt_token_ids[-max_prompt_length:]
    # vLLM's output: the generated ids, ending with the end-of-turn token it stopped on
    action_token_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id]
    observation_tokens = prompt_token_ids + action_token_ids
    reward = scores = None
    extra_logs: dict[str, Any] = {}
    try:
        query = tokenizer.decode(observation_tokens, skip_special_tokens=False)
        rewards_info = await _openrlhf_post(timeout, url, {
            "query": [query], "prompts": [prompt], "labels": [label]})
        if rewards_info:
            score_value = rewards_info.get("scores")
            if score_value is None:
                score_value = rewards_info.get("rewards")
            reward, scores = rewards_info.get("rewards"), score_value
            extra_logs = rewards_info.get("extra_logs") or {}
    except Exception:  # noqa: BLE001 - OpenRLHF logs it and leaves the reward None
        query = ""
    # openrlhf/trainer/ppo_utils/samples_generator.py, _process_response_into_experience
    info: dict[str, torch.Tensor] = {}
    if reward is not None:
        info["reward"] = torch.tensor([reward])
    if scores is not None:
        info["score"] = torch.tensor([scores])
    for key, value in extra_logs.items():
        info[key] = torch.tensor([value])
    return Experience(rewards=torch.tensor([reward]) if reward is not None else None,
                      scores=torch.tensor([scores]) if scores is not None else None,
                      info=info, query=query)


def openrlhf_group_norm(experiences: list[Experience], n_samples_per_prompt: int
                        ) -> torch.Tensor:
    """Advantages under ``--algo.advantage.estimator group_norm``."""
    # openrlhf/trainer/ppo_utils/experience_maker.py, compute_advantages_and_returns
    raw = torch.cat([e.rewards.to(torch.float32) for e in experiences], dim=0)  # type: ignore[union-attr]
    rewards = raw.reshape(-1, n_samples_per_prompt)
    rewards = (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + 1e-9)
    return rewards.reshape(-1)


# --------------------------------------------------------------------------- OpenRLHF 0.9.0


def openrlhf_090_batch(url: str, tokenizer: Any, prompts: list[str], labels: list[Any],
                       responses: list[str], *, prompt_max_len: int = 1024,
                       timeout: float = 180.0) -> dict[str, Any]:
    """A rollout batch's rewards as OpenRLHF 0.9.0 gets them (one request)."""
    import requests

    # openrlhf/trainer/ppo_utils/experience_maker.py, SamplesGenerator._generate_vllm and
    # tokenize_fn: truncation=True with the tokenizer's own side (right for most)
    all_prompt_token_ids = tokenizer(prompts, add_special_tokens=False, max_length=prompt_max_len,
                                     truncation=True)["input_ids"]
    sequences = [ids + tokenizer(r, add_special_tokens=False)["input_ids"] +
                 [tokenizer.eos_token_id] for ids, r in zip(all_prompt_token_ids, responses,
                                                            strict=True)]
    queries = tokenizer.batch_decode(sequences, skip_special_tokens=False)
    # openrlhf/utils/remote_rm_utils.py, request_api_wrapper: requests, timeout=180, 5 tries
    info = None
    for _ in range(5):
        try:
            response = requests.post(url=url, json={"query": queries, "prompts": prompts,
                                                    "labels": labels},
                                     headers={"Content-Type": "application/json"},
                                     timeout=timeout)
            response.raise_for_status()
            info = response.json()
            break
        except Exception:  # noqa: BLE001 - OpenRLHF logs and retries every error
            pass
    if info is None:
        raise RuntimeError("Request error for 5 times")
    # experience_maker.py, update_samples_with_rewards (one server: one info dict)
    rewards_info = [info]
    rewards = torch.cat([torch.as_tensor(i["rewards"]) for i in rewards_info], dim=0)
    scores = torch.cat([torch.as_tensor(i["scores"]) for i in rewards_info], dim=0)
    logs = {key: torch.cat([torch.as_tensor(i["extra_logs"][key]) for i in rewards_info], dim=0)
            for key in rewards_info[0]["extra_logs"]}
    return {"rewards": rewards, "scores": scores, "extra_logs": logs, "queries": queries}


# --------------------------------------------------------------------------- slime


@dataclass
class SlimeSample:
    """The fields of slime's ``Sample`` (slime/utils/types.py) a reward reaches."""

    prompt: Any
    response: str
    label: Any
    reward: Any = None


async def slime_remote_rm(url: str, sample: SlimeSample, session: Any,
                          max_retries: int = 10) -> Any:
    # slime/rollout/rm_hub/__init__.py, remote_rm: the shared session's
    # ClientTimeout(total=120), raise_for_status, backoff min(2**attempt, 30) + jitter
    payload = {"prompt": sample.prompt, "response": sample.response, "label": sample.label}
    for attempt in range(max_retries):
        try:
            async with session.post(url, json=payload) as resp:
                resp.raise_for_status()
                return await resp.json()
        except Exception:
            if attempt + 1 >= max_retries:
                raise
            await asyncio.sleep(min(2**attempt, 30) + random.random())
    raise AssertionError("unreachable")


async def slime_group_rewards(url: str, group: list[SlimeSample]) -> None:
    """Reward a group's samples the way slime's rollout does: each one concurrently."""
    import aiohttp

    # slime/rollout/rm_hub/__init__.py, _get_shared_session; sglang_rollout.py,
    # generate_and_rm_group gathers generate_and_rm (async_rm per sample)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        replies = await asyncio.gather(*(slime_remote_rm(url, s, session) for s in group))
    for sample, reply in zip(group, replies, strict=True):
        sample.reward = reply


def slime_advantages(samples: list[SlimeSample], n_samples_per_prompt: int,
                     reward_key: str = "reward") -> list[float]:
    """``--advantage-estimator grpo`` with slime's defaults (rewards and std normalised)."""
    # slime/utils/types.py, Sample.get_reward_value; slime/ray/rollout.py,
    # _post_process_rewards
    raw_rewards = [s.reward if not reward_key else s.reward[reward_key] for s in samples]
    rewards = torch.tensor(raw_rewards, dtype=torch.float)
    rewards = rewards.reshape(-1, n_samples_per_prompt)
    mean = rewards.mean(dim=-1, keepdim=True)
    rewards = rewards - mean
    std = rewards.std(dim=-1, keepdim=True)
    rewards = rewards / (std + 1e-6)
    return rewards.flatten().tolist()
