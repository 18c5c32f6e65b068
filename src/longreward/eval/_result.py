"""The typed result of ``eval agreement``: what ``evaluate_agreement`` returns, what it writes
as JSON, and what the report and the CLI read back (``AgreementResult.read``).

One model, so a field added here reaches the file, the console table and the report at once;
the JSON keys are the fields' names (version 1 files, written before the diagnostics and the
subset existed, still load: those fields default to empty).

A method is anything that prefers one answer of a pair: the reward, a dimension, a baseline, a
leave-one-out reward, or a new scoring *mode* (e.g. listwise selection, probability-weighted
verdicts). Each is a ``MethodAccuracy`` in ``methods`` with its ``group``; a mode added later
is one more group, shown in the same table with the same interval and cost columns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from ._run import write_result

RESULT_KIND = "longreward.eval.agreement"
RESULT_VERSION = 2

#: the groups of methods, in the order the table shows them ("mode": a scoring mode other
#: than pointwise LongReward, compared on the same pairs)
METHOD_GROUPS = ("reward", "mode", "dimension", "baseline", "ablation")


class _Model(BaseModel):
    # Results are read back by later versions: unknown keys are ignored, not refused.
    model_config = ConfigDict(extra="ignore")


R = TypeVar("R", bound="EvalResult")


class EvalResult(_Model):
    """What every typed eval result shares: written as JSON (the keys are the fields' names)
    and read back; a file that is not one is a ``UsageError`` naming it."""

    #: how messages name this kind of result
    what: ClassVar[str] = "eval result"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def write(self, path: str | Path) -> None:
        """Write the result JSON atomically."""
        write_result(path, self.to_json())

    @classmethod
    def read(cls: type[R], path: str | Path) -> R:
        """Read a result file (a ``UsageError`` naming the file when it is not one)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read an {cls.what} ({exc})") from None
        return cls.from_json(data, where=str(path))

    @classmethod
    def from_json(cls: type[R], data: Any, *, where: str | None = None) -> R:
        from pydantic import ValidationError

        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise UsageError(f"{where or cls.what}: not a valid {cls.what}: {loc}: "
                             f"{first['msg']}") from None


class MethodCost(_Model):
    """What a method cost: requests sent and their tokens, summed over the runs of this
    evaluation; ``calls`` = the requests the method needs; ``cache_hits`` this run's."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    calls: int = 0
    cache_hits: int = 0


class MethodAccuracy(_Model):
    """One method's agreement with the human labels (see ``_stats.accuracy``)."""

    name: str
    group: str
    accuracy: float | None
    #: the bootstrap interval (None, None when not computed)
    ci: tuple[float | None, float | None]
    n: int
    agree: int
    disagree: int
    ties: int
    abstained: int
    cost: MethodCost | None = None
    #: leave-one-out rows: the dimension left out, and the accuracy minus the reward's
    removed: str | None = None
    delta: float | None = None


class PairVerdicts(_Model):
    """One human-labelled pair with every method's verdict on it."""

    id: str
    prompt_id: str
    a: str
    b: str
    label: Literal["a", "b"]
    gap: float | None = None
    reward_a: float | None = None
    reward_b: float | None = None
    verdicts: dict[str, Literal["a", "b", "tie"] | None]


DiagnosticStatus = Literal["ok", "warn", "not_measured", "not_recorded"]


class Diagnostic(_Model):
    """One check of when to trust the reward, with its one-line reading."""

    name: str
    #: what is measured, for a table's first column
    title: str
    #: the headline number (a rate, a correlation, a spread), None when not measured
    value: float | None
    #: how many items (answers, prompts, pairs) it rests on
    n: int = 0
    status: DiagnosticStatus = "ok"
    #: one sentence a user can act on, e.g. "the reward mostly measures length here"
    reading: str
    details: dict[str, Any] = Field(default_factory=dict)


class BootstrapInfo(_Model):
    resamples: int
    seed: int
    level: float
    unit: str = "prompt"


class ScoringSummary(_Model):
    answers: int = 0
    scored_now: int = 0
    resumed: int = 0
    all_unscored: int = 0
    internal_errors: int = 0


class Subset(_Model):
    """Which part of the data this run evaluated (``--prompts`` / ``--limit``)."""

    prompts_in_data: int
    prompts: list[str] | None = None
    limit: int | None = None


class AgreementResult(EvalResult):
    what: ClassVar[str] = "agreement result"
    kind: Literal["longreward.eval.agreement"] = RESULT_KIND
    version: int = RESULT_VERSION
    data: str
    scored: str
    run_dir: str
    format: Literal["pairwise", "pointwise"]
    #: set when only part of the data was evaluated
    subset: Subset | None = None
    prompts: int
    answers: int
    pairs: int
    human_ties_left_out: int = 0
    below_min_gap: int = 0
    rejected: int = 0
    tie_rule: str
    tie_rule_text: str
    bootstrap: BootstrapInfo
    dimensions: list[str]
    weights: dict[str, float] | None = None
    judge: dict[str, Any] = Field(default_factory=dict)
    methods: list[MethodAccuracy]
    ablation: list[MethodAccuracy] = Field(default_factory=list)
    ablation_seconds: float = 0.0
    ablation_requests: int = 0
    baseline_details: dict[str, Any] = Field(default_factory=dict)
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    pair_details: list[PairVerdicts] = Field(default_factory=list)
    scoring: ScoringSummary = Field(default_factory=ScoringSummary)
    #: the judge client's counters (requests, cache hits, tokens, per tag)
    stats: dict[str, Any] = Field(default_factory=dict)
    slowest_calls: list[dict[str, Any]] = Field(default_factory=list)
    seconds: float = 0.0
    exit_code: int = 0
    options: dict[str, Any] = Field(default_factory=dict)

    def method(self, name: str) -> MethodAccuracy | None:
        """The method (or leave-one-out row) called ``name``."""
        return next((m for m in [*self.methods, *self.ablation] if m.name == name), None)

    @property
    def reward(self) -> MethodAccuracy | None:
        return next((m for m in self.methods if m.group == "reward"), None)

    def diagnostic(self, name: str) -> Diagnostic | None:
        return next((d for d in self.diagnostics if d.name == name), None)
