"""``longreward sample``: the resumable file stage around ``preference.sampling``.

Rows are committed per prompt; a prompt cut off by a crash is replayed and its completed
requests come from the call cache, so only the missing answers reach the policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputFileError, RecordError
from ..io.files import check_output, rejected_path
from ..io.records import Prompt, read_prompts
from ..preference.sampling import (
    STAGE,
    SampleOptions,
    SamplingFailed,
    _completion_api_class,
    answer_id,
    build_policy_client,
    make_renderer,
    sample_prompt,
)
from ..store import RunStore
from .runner import StageSpec, Unit, fingerprint, run_stage, stage_run_dir

if TYPE_CHECKING:
    from ..judge.batch import BatchRun

STAGE_NAME = STAGE


@dataclass
class SampleSummary:
    prompts: int = 0  # good prompt rows read
    already_done: int = 0  # prompts complete before this run
    sampled: int = 0  # prompts completed in this run
    failed: dict[str, str] = field(default_factory=dict)  # prompt_id -> error
    candidates: int = 0  # rows written in this run
    duplicates: int = 0  # answers identical to an earlier answer of the same prompt
    truncated: int = 0  # prompts whose document was cut
    errors: list[RecordError] = field(default_factory=list)
    requests: int = 0  # requests sent to the model
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    window: int | None = None
    output: str = ""
    changed: int = 0  # prompts edited since they were sampled: their answers sampled again

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "already_done": self.already_done,
            "changed": self.changed,
            "sampled": self.sampled,
            "failed": len(self.failed),
            "candidates_written": self.candidates,
            "duplicates": self.duplicates,
            "truncated": self.truncated,
            "rejected_records": len(self.errors),
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "output": self.output,
        }


    @property
    def exit_code(self) -> int:
        return 1 if (self.errors or self.failed) else 0


def _row_fingerprint(row: dict[str, Any]) -> str:
    return fingerprint(row.get("document"), row.get("query"))


async def sample_file(
    prompts_path: str | Path,
    output_path: str | Path,
    options: SampleOptions,
    *,
    run_dir: str | Path | None = None,
    client: Any | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_prompt: Callable[[str], None] | None = None,
    batch: BatchRun | None = None,
) -> SampleSummary:
    """Sample ``options.n`` answers for every prompt of ``prompts_path`` into ``output_path``.

    Resumable: rerun with the same arguments after a crash and only missing work is done;
    a rerun with nothing left to do makes no model call. ``on_start(total, done_before)`` (in
    prompts) and ``on_prompt(prompt_id)`` drive a progress bar; ``client`` replaces the one
    built from ``options.policy`` (its cache is set to the run's store if it has none).
    ``batch`` sends the requests as rounds of batch requests (``batch_policy_client`` makes
    its client); in file mode this raises ``BatchPending`` once a round is written.
    """
    started = time.perf_counter()
    output_path = Path(output_path)
    summary = SampleSummary(output=str(output_path))
    run_dir = stage_run_dir(output_path, run_dir)
    check_output(output_path, inputs=(prompts_path,), extra=(rejected_path(output_path),),
                 run_dir=run_dir)
    prompts, summary.errors = read_prompts(prompts_path, options.fields)
    if not prompts and not summary.errors:
        raise InputFileError(f"{prompts_path} holds no records (it is empty or only blank "
                             "lines): nothing to sample")
    summary.prompts = len(prompts)
    own_client = client is None
    renderer = None

    def attach(store: RunStore) -> None:
        nonlocal client
        if batch is not None:
            client = client or batch_policy_client(options, batch)
            batch.attach(store)
        elif client is None:
            client = build_policy_client(options.policy, cache=store)
        elif client.cache is None:
            client.cache = store

    async def work(unit: Unit, left: list[str], commit: Callable[[dict[str, Any]], None]
                   ) -> None:
        nonlocal renderer
        prompt: Prompt = unit.payload
        if renderer is None:  # built on first need: a resumed, finished run loads nothing
            renderer = make_renderer(options)
            summary.window = renderer.window
        try:
            got = await sample_prompt(prompt, options=options, renderer=renderer, client=client)
        except SamplingFailed as exc:
            summary.failed[prompt.id] = str(exc)
            return
        wanted = set(left)
        for row in got.rows:
            if row["id"] in wanted:
                commit(row)
                summary.candidates += 1
        summary.duplicates += got.duplicates
        summary.truncated += got.truncation is not None
        summary.sampled += 1

    units = [Unit(p.id, {answer_id(p.id, k): fingerprint(p.document_key, p.query)
                         for k in range(options.n)}, p) for p in prompts.values()]
    spec = StageSpec(STAGE, options.output_settings(), _row_fingerprint)
    try:
        outcome = await run_stage(
            spec, units, work, output_path=output_path, run_dir=run_dir,
            # batch mode: every prompt at once, so that one round holds all their requests
            concurrency=len(units) if batch else options.prompt_concurrency,
            rejected=summary.errors, on_open=attach,
            supervise=batch.supervise if batch else None,
            on_start=(lambda o: on_start(o.units_total, o.units_done_before)) if on_start
            else None,
            on_unit_done=(lambda unit: on_prompt(unit.key)) if on_prompt else None)
        summary.errors = outcome.rejected
        summary.already_done = outcome.units_done_before
        stale = set(outcome.stale)
        summary.changed = sum(1 for u in units if stale & set(u.items))
        if client is not None:
            snap = client.snapshot()["by_tag"].get(STAGE, {})
            summary.requests = snap.get("requests", 0)
            summary.cache_hits = snap.get("cache_hits", 0)
            summary.prompt_tokens = snap.get("prompt_tokens", 0)
            summary.completion_tokens = snap.get("completion_tokens", 0)
    finally:
        if batch is not None:
            batch.close()
        if own_client and client is not None:
            await client.aclose()
    summary.seconds = time.perf_counter() - started
    return summary


def batch_policy_client(options: SampleOptions, batch: BatchRun) -> Any:
    """The policy client of a batch-mode sample run (completion style included)."""
    wrap = _completion_api_class() if options.policy.style == "completion" else None
    return batch.make_client(options.policy, wrap=wrap)
