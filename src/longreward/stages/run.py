"""``longreward run CONFIG``: sample → score → pairs from one YAML file, resumably.

Every stage keeps its finished work in the one run store (``run_dir/longreward.sqlite``):
sampling under stage ``sample``, scoring under its own stage, and both share the call cache.
A run killed at any point is rerun with the same command; a stage that is complete makes no
model call, and ``pairs`` (no model calls, a pure function of the scored file) is recomputed
every time, so the pairs of a resumed run equal those of an uninterrupted one.

A resumed stage must not reuse results made with other settings (another ``n``, policy,
layout, judge or dimension set): each stage's output-deciding settings are kept in the store,
and a rerun with changed ones stops with an error that says how to start afresh, instead of
silently mixing old rows with new ones (``store.check_stage_settings``).

Relative paths in the config are resolved against the config file's directory, so a config
and its data can move together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import ScoreOptions, load_config_file
from ..io.records import FieldMap
from ..preference.pairs import PairOptions
from ..preference.sampling import SampleOptions
from ..store import RunLock, check_stage_settings
from ..train.config import TrainConfig
from .pairs import PairsSummary, build_pairs, build_pairs_async
from .sample import SampleSummary, sample_file
from .score import ScoreSummary, score_output_settings

__all__ = ["RunConfig", "RunOutputs", "RunSummary", "load_run_config", "run_pipeline"]


class RunOutputs(BaseModel):
    """Output files; relative names are placed inside ``run_dir``."""

    model_config = ConfigDict(extra="forbid")

    candidates: str = "candidates.jsonl"
    scored: str = "scored.jsonl"
    pairs: str = "pairs.jsonl"


class RunConfig(BaseModel):
    """The whole of a ``longreward run``: one YAML file maps onto this model."""

    model_config = ConfigDict(extra="forbid")

    prompts: str = Field(description="JSONL/JSON/Parquet of id, context, query")
    #: field names of the prompts file, for every stage that reads it (sample, and the
    #: document joins of score and pairs); ``sample.fields`` may give them instead
    fields: FieldMap | None = None
    run_dir: str = Field("longreward-run", description="store, outputs and summaries")
    outputs: RunOutputs = Field(default_factory=RunOutputs)
    sample: SampleOptions = Field(default_factory=SampleOptions)
    score: ScoreOptions = Field(default_factory=ScoreOptions)
    pairs: PairOptions = Field(default_factory=PairOptions)
    #: optional DPO + λ·CE training on the pairs (needs the ``train`` extra); its ``pairs``
    #: defaults to this run's pairs file and its ``output_dir`` to ``run_dir/train``
    train: TrainConfig | None = None
    #: a Hub dataset id to upload the pairs to (needs the ``hub`` extra)
    push_to_hub: str | None = None

    @model_validator(mode="after")
    def _one_field_map(self) -> RunConfig:
        # One map for the prompts file: a top-level ``fields`` or the sample section's. The
        # score and pairs stages read the same file through it, so a renamed id or document
        # field cannot work in one stage and reject every row in the next.
        if self.fields is not None:
            if "fields" in self.sample.model_fields_set and self.sample.fields != self.fields:
                raise ValueError("fields and sample.fields disagree; give the prompts file's "
                                 "field names once, as top-level fields")
            self.sample = self.sample.model_copy(update={"fields": self.fields})
        else:
            self.fields = self.sample.fields
        if self.pairs.fields != self.fields:
            self.pairs = self.pairs.model_copy(update={"fields": self.fields})
        return self

    @model_validator(mode="after")
    def _pairs_prompt_as_sampled(self) -> RunConfig:
        # DPO must see the prompt the answers were sampled from: unless the pairs section
        # says otherwise, it inherits the sampling system prompt and layout.
        updates: dict[str, Any] = {}
        if "system_prompt" not in self.pairs.model_fields_set:
            updates["system_prompt"] = self.sample.system_prompt
        if "prompt_template" not in self.pairs.model_fields_set:
            updates["prompt_template"] = self.sample.prompt_template
        if updates:
            self.pairs = self.pairs.model_copy(update=updates)
        # The run knows the prompts file, so candidates need not carry the document: score
        # and pairs join it back by prompt_id (N times less disk for N samples).
        if "include_context" not in self.sample.model_fields_set:
            self.sample = self.sample.model_copy(update={"include_context": False})
        return self

    def resolve(self, base: Path) -> RunConfig:
        """Paths made absolute against ``base`` (the config file's directory)."""
        def fix(p: str, root: Path) -> str:
            path = Path(p).expanduser()
            return str(path if path.is_absolute() else (root / path))

        run_dir = Path(fix(self.run_dir, base))
        pairs_path = fix(self.outputs.pairs, run_dir)
        train = self.train
        if train is not None:
            train = train.model_copy(update={
                "pairs": fix(train.pairs, base) if train.pairs else pairs_path,
                "output_dir": fix(train.output_dir, base) if train.output_dir
                else str(run_dir / "train"),
            })
        return self.model_copy(update={
            "train": train,
            "prompts": fix(self.prompts, base),
            "run_dir": str(run_dir),
            "outputs": RunOutputs(
                candidates=fix(self.outputs.candidates, run_dir),
                scored=fix(self.outputs.scored, run_dir),
                pairs=fix(self.outputs.pairs, run_dir),
            ),
        })


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and validate a run config (YAML or TOML); paths resolved against its directory."""
    from ..config import deep_merge

    path = Path(path)
    data = load_config_file(path)
    if overrides:
        data = deep_merge(data, overrides)
    return RunConfig.model_validate(data).resolve(path.resolve().parent)


@dataclass
class RunSummary:
    sample: SampleSummary | None = None
    score: ScoreSummary | None = None
    pairs: PairsSummary | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    model_calls: dict[str, int] = field(default_factory=dict)

    train: Any = None  # train.TrainResult when the config has a train: section

    @property
    def exit_code(self) -> int:
        bad = bool(
            (self.sample and self.sample.exit_code)
            or (self.score is not None and self.score.exit_code)
            or (self.pairs and self.pairs.exit_code)
        )
        return 1 if bad else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sample": self.sample.as_dict() if self.sample else None,
            "score": None if self.score is None else {
                "answers": self.score.answers_total,
                "already_done": self.score.answers_done_before,
                "scored": self.score.answers_scored,
                "all_unscored": self.score.all_unscored,
                "no_reward": self.score.no_reward,
                "flagged": self.score.flagged_answers,
                "rejected_records": len(self.score.rejected),
            },
            "pairs": self.pairs.as_dict() if self.pairs else None,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "model_calls": self.model_calls,
        }


#: ``stage_bar(name, stats)`` returns a context manager yielding an object with
#: ``start(total, done)`` and ``advance()``; the CLI passes rich bars, tests pass nothing.
StageBar = Callable[[str, Callable[[], dict[str, Any]] | None], AbstractContextManager[Any]]


class _NoBar:
    def start(self, total: int, completed: int = 0) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def _no_bar(name: str, stats: Callable[[], dict[str, Any]] | None) -> AbstractContextManager[Any]:
    return nullcontext(_NoBar())


async def run_pipeline(
    config: RunConfig,
    *,
    stage_bar: StageBar | None = None,
    on_stage_done: Callable[[str, Any], None] | None = None,
) -> RunSummary:
    """Run sample → score → pairs for an already resolved ``config``; the summary is also
    written to ``run_dir/run_summary.json``."""
    run_dir = Path(config.run_dir)
    # One lock for the whole run: a second ``run`` (or a ``score`` pointed at this directory)
    # stops at once; the stages below take the same lock again, re-entrantly.
    with RunLock(run_dir):
        summary = await _run_pipeline(config, stage_bar, on_stage_done)
    # Beside the store, for whoever looks at the run directory later (library callers too).
    (run_dir / "run_summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n",
                                              encoding="utf-8")
    return summary


async def _run_pipeline(config: RunConfig, stage_bar: StageBar | None,
                        on_stage_done: Callable[[str, Any], None] | None) -> RunSummary:
    from ..preference.sampling import build_policy_client
    from ..reward.scorer import LongReward, build_client
    from ..store import RunStore
    from .score import SCORE_STAGE, score_file

    bar_for = stage_bar or _no_bar
    out = config.outputs
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary()
    # Listwise selection asks the judge to pick the pairs from the sampled answers: there
    # is no score stage (the score section only names the judge).
    listwise = config.pairs.selection == "listwise"
    with RunStore(run_dir) as store:
        # Both model stages are checked before either runs, so a changed judge is reported
        # before any new sampling is paid for.
        check_stage_settings(store, "sample", config.sample.output_settings(), where=str(run_dir))
        if not listwise:
            check_stage_settings(store, SCORE_STAGE, score_output_settings(config.score),
                                 where=str(run_dir))
        # Kept so a later look at the run dir says how it was made (no secrets: keys are
        # given by environment variable name only).
        store.set_meta("run_config", config.model_dump(mode="json"))

    # -- sample
    t0 = time.perf_counter()
    client = build_policy_client(config.sample.policy)  # sample_file attaches the store
    try:
        with bar_for("sample", client.snapshot) as bar:
            summary.sample = await sample_file(
                config.prompts, out.candidates, config.sample, run_dir=run_dir, client=client,
                on_start=lambda total, done: bar.start(total, done),
                on_prompt=lambda _pid: bar.advance(),
            )
    finally:
        await client.aclose()
    summary.seconds["sample"] = time.perf_counter() - t0
    summary.model_calls["sample"] = summary.sample.requests
    if on_stage_done:
        on_stage_done("sample", summary.sample)

    if listwise:
        t0 = time.perf_counter()
        with bar_for("pairs", None) as bar:
            summary.pairs = await build_pairs_async(
                out.candidates, out.pairs, config.pairs, prompts_path=config.prompts,
                prompt_fields=config.fields, run_dirs=[run_dir], push_to_hub=config.push_to_hub,
                judge=config.score, run_dir=run_dir, on_start=lambda total: bar.start(total),
                on_prompt=lambda _pid: bar.advance())
        summary.seconds["pairs"] = time.perf_counter() - t0
        summary.model_calls["pairs"] = int(summary.pairs.stats.get("listwise", {})
                                           .get("requests", 0))
        if on_stage_done:
            on_stage_done("pairs", summary.pairs)
        return await _train(config, summary, on_stage_done)

    # -- score
    t0 = time.perf_counter()
    scorer = LongReward(build_client(config.score), options=config.score)
    try:
        with bar_for("score", scorer.client.snapshot) as bar:
            summary.score = await score_file(
                out.candidates, out.scored, config.score, run_dir=run_dir, scorer=scorer,
                on_start=lambda total, done: bar.start(total, done),
                on_answer=lambda _row: bar.advance(), prompts_path=config.prompts,
                prompt_fields=config.fields,
            )
    finally:
        await scorer.aclose()
    summary.seconds["score"] = time.perf_counter() - t0
    summary.model_calls["score"] = int(summary.score.stats.get("requests", 0))
    if on_stage_done:
        on_stage_done("score", summary.score)

    # -- pairs
    t0 = time.perf_counter()
    summary.pairs = build_pairs(
        out.scored, out.pairs, config.pairs, prompts_path=config.prompts,
        prompt_fields=config.fields, run_dirs=[run_dir], push_to_hub=config.push_to_hub,
    )
    summary.seconds["pairs"] = time.perf_counter() - t0
    summary.model_calls["pairs"] = 0
    if on_stage_done:
        on_stage_done("pairs", summary.pairs)
    return await _train(config, summary, on_stage_done)


async def _train(config: RunConfig, summary: RunSummary,
                 on_stage_done: Callable[[str, Any], None] | None) -> RunSummary:
    # -- train (optional)
    if config.train is not None and summary.pairs is not None and summary.pairs.pairs:
        from ..train import train

        t0 = time.perf_counter()
        summary.train = train(config.train)
        summary.seconds["train"] = time.perf_counter() - t0
        if on_stage_done:
            on_stage_done("train", summary.train)
    return summary
