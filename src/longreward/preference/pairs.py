"""Chosen / rejected selection from scored candidates, and writing the pair dataset.

The paper (LongReward §3.3) samples 10 answers per prompt at temperature 1.0, takes the answer
with the highest reward as *chosen* and the one with the lowest as *rejected*. The reference
code additionally needs at least 5 scored answers before it builds a pair; we keep that as the
``min_candidates`` default.

Where we go further than the paper, and why:

- **An answer with no reward is neither chosen nor rejected.** By default a reward is null
  whenever the judge left a dimension unscored (an outage, the deadline: DESIGN.md, "The
  reward is monotone in answer quality"); such an answer's quality is unknown, so it is never
  *chosen* (it could be the worst), and never *rejected* either (it could be the best:
  pushing it down would teach the policy against a good answer because the judge failed).
  It is left out of its prompt's candidates; the other answers still make a pair if there
  are ``min_candidates`` of them. (An answer whose own text made a verdict unreadable is not
  in this case: that dimension scored its minimum, and its reward is a number.)
- **Same dimensions, same judge only.** With ``unscored_dimension: mean_of_scored`` an answer
  whose faithfulness could not be scored has a reward averaged over three dimensions, not
  four, so its reward is not comparable with the others; nor is a reward from another judge
  (a scored file merged from two runs). Candidates of one prompt are therefore grouped by the
  set of dimensions that went into their reward and by the row's ``judge``, and the pair is
  built inside the *largest* group (ties: more dimensions first, then the sorted names) if
  that group has at least ``min_candidates`` answers. Smaller groups are ignored for that
  prompt.
- **Flagged answers lose ties.** Among answers with the highest reward, one without flags
  (verdict-shaped or judge-addressed text, ``reward.injection``) is chosen before one with
  flags; among those with the lowest, a flagged one is rejected first. An injected answer
  that a judge scored exactly like its clean control is therefore never chosen over it.
- **Skips are counted, never silent.** A prompt yields no pair for exactly one reason:
  ``all_unscored``, ``too_few_candidates``, ``mixed_dimensions`` (enough scored answers, but no
  single judge and dimension set has enough), ``tie`` (highest reward equals lowest), ``below_margin``,
  ``dimension_rule`` (``not_worse_on`` failed or could not be checked), ``identical_answers``
  or ``missing_prompt``.
- **Other ties inside the top or bottom** are broken deterministically (``sample_index``, then id), so
  the same scored file gives the same pairs however its rows are ordered (a resumed run writes
  rows in completion order).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import RecordError
from ..io.records import FieldMap, document_text
from .formats import (
    DEFAULT_PROMPT_TEMPLATE,
    PAIR_FORMATS,
    PairFormat,
    PairKeys,
    check_pair_format,
    check_prompt_template,
)
from .listwise import LISTWISE_SKIPS, ListwiseOptions

__all__ = [
    "SKIP_REASONS",
    "Candidate",
    "PairOptions",
    "Selection",
    "candidate_from_row",
    "iter_selections",
    "select_pair",
]

SKIP_REASONS: tuple[str, ...] = (
    "all_unscored",
    "too_few_candidates",
    "mixed_dimensions",
    "tie",
    "below_margin",
    "dimension_rule",
    "identical_answers",
    "missing_prompt",
    *(s for s in LISTWISE_SKIPS if s not in ("too_few_candidates", "identical_answers")),
)

#: metadata columns every output row carries, whatever the format
META_COLUMNS: tuple[str, ...] = (
    "prompt_id",
    "chosen_id",
    "rejected_id",
    "chosen_reward",
    "rejected_reward",
    "margin",
    "chosen_scores",
    "rejected_scores",
    "dimensions",
)


class PairOptions(BaseModel):
    """Options of ``longreward pairs`` (and the ``pairs:`` section of a run config)."""

    model_config = ConfigDict(extra="forbid")

    format: PairFormat = Field("trl", description=", ".join(PAIR_FORMATS))
    min_candidates: int = Field(5, ge=2, description="scored answers needed (same dimensions)")
    min_margin: float = Field(0.0, ge=0, description="skip pairs whose reward gap is smaller")
    not_worse_on: list[str] = Field(
        default_factory=list,
        description="dimensions on which chosen must score at least as high as rejected",
    )
    system_prompt: str | None = Field(None, description="system message put before the prompt")
    prompt_template: str = Field(DEFAULT_PROMPT_TEMPLATE, description="user-turn layout")
    #: field names of the prompts file (``--prompts``), the same map ``sample`` reads it with
    fields: FieldMap = Field(default_factory=FieldMap)
    prompt_key: str = "prompt"  # openrlhf column names
    chosen_key: str = "chosen"
    rejected_key: str = "rejected"
    write_parquet: bool = Field(True, description="also write <output stem>.parquet")
    #: how chosen and rejected are found: "pointwise" (highest and lowest reward of the
    #: scored answers, the paper's way) or "listwise" (a judge sees all of a prompt's answers
    #: at once and names the best and the worst: ``preference.listwise``; needs a judge, not
    #: scores)
    selection: Literal["pointwise", "listwise"] = "pointwise"
    listwise: ListwiseOptions = Field(default_factory=ListwiseOptions)

    @model_validator(mode="after")
    def _rules_need_rewards(self) -> PairOptions:
        # Listwise selection gives no reward and no per-dimension score: a margin or a
        # not-worse-on rule would skip every prompt, so it is refused up front.
        if self.selection == "listwise" and (self.min_margin or self.not_worse_on):
            raise ValueError("min_margin and not_worse_on compare rewards and dimension "
                             "scores, which listwise selection does not give; drop them or "
                             "use selection: pointwise")
        return self

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        return check_pair_format(v)

    @field_validator("prompt_template")
    @classmethod
    def _template_ok(cls, v: str) -> str:
        return check_prompt_template(v)

    @field_validator("not_worse_on")
    @classmethod
    def _known_dimensions(cls, v: list[str]) -> list[str]:
        # A misspelt name would silently skip every prompt as "dimension_rule".
        from ..config import check_dimension_names

        return check_dimension_names(v)

    @property
    def keys(self) -> PairKeys:
        return PairKeys(self.prompt_key, self.chosen_key, self.rejected_key)


@dataclass
class Candidate:
    """One scored answer as pair selection sees it."""

    id: str
    prompt_id: str
    response: str
    reward: float | None
    dimensions: tuple[str, ...]
    scores: dict[str, float | None] = field(default_factory=dict)
    sample_index: int | None = None
    context: str | None = None
    query: str | None = None
    judge: dict[str, Any] | None = None
    #: hash of the document the answer was scored against (``score`` rows record it)
    document: str | None = None
    #: flagged spans in the answer (verdict-shaped or judge-addressed text)
    flags: int = 0

    @property
    def order(self) -> tuple[int, str]:
        # sample order first so "the first of equals" means the same thing in every run
        return (self.sample_index if self.sample_index is not None else 1 << 30, self.id)


@dataclass
class Selection:
    """The outcome for one prompt: a chosen/rejected pair, or the reason there is none."""

    prompt_id: str
    chosen: Candidate | None = None
    rejected: Candidate | None = None
    skip: str | None = None
    detail: str = ""

    @property
    def margin(self) -> float | None:
        if self.chosen is None or self.rejected is None:
            return None
        if self.chosen.reward is None or self.rejected.reward is None:
            return None  # listwise selection: no rewards (or not for both)
        return self.chosen.reward - self.rejected.reward


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9)


def _judge_key(c: Candidate) -> str:
    return json.dumps(c.judge, sort_keys=True) if c.judge else ""


def select_pair(
    prompt_id: str,
    candidates: list[Candidate],
    *,
    min_candidates: int = 5,
    min_margin: float = 0.0,
    not_worse_on: Iterable[str] = (),
) -> Selection:
    """Pick chosen (highest reward) and rejected (lowest) among ``candidates`` of one prompt."""
    scored = [c for c in candidates if c.reward is not None]
    if not scored:
        return Selection(prompt_id, skip="all_unscored", detail=f"{len(candidates)} answers")
    # Rewards are comparable only when the same judge scored the same dimensions: a merged
    # scored file may hold one prompt's answers from two judges, whose scales differ.
    groups: dict[tuple[frozenset[str], str], list[Candidate]] = {}
    for c in scored:
        groups.setdefault((frozenset(c.dimensions), _judge_key(c)), []).append(c)
    _key, group = max(
        groups.items(),
        key=lambda kv: (len(kv[1]), len(kv[0][0]), tuple(sorted(kv[0][0])), kv[0][1]),
    )
    if len(group) < min_candidates:
        reason = "mixed_dimensions" if len(scored) >= min_candidates else "too_few_candidates"
        return Selection(
            prompt_id,
            skip=reason,
            detail=f"{len(group)} of {len(scored)} scored answers share one judge and dimension "
            f"set; need {min_candidates}",
        )
    chosen = min(group, key=lambda c: (-c.reward, c.flags > 0, c.order))  # type: ignore[operator]
    rejected = min(group, key=lambda c: (c.reward, c.flags == 0, c.order))
    sel = Selection(prompt_id, chosen=chosen, rejected=rejected)
    margin = sel.margin
    assert margin is not None
    if _close(margin, 0.0):
        return Selection(prompt_id, skip="tie", detail=f"all {len(group)} rewards equal")
    if margin < min_margin and not _close(margin, min_margin):
        return Selection(prompt_id, skip="below_margin", detail=f"margin {margin:g} < {min_margin:g}")
    for dim in not_worse_on:
        cs, rs = chosen.scores.get(dim), rejected.scores.get(dim)
        if cs is None or rs is None:
            return Selection(prompt_id, skip="dimension_rule", detail=f"{dim} unscored")
        if cs < rs and not _close(cs, rs):
            return Selection(
                prompt_id, skip="dimension_rule", detail=f"chosen {dim} {cs:g} < rejected {rs:g}"
            )
    if chosen.response.strip() == rejected.response.strip():
        return Selection(prompt_id, skip="identical_answers")
    return sel


# --------------------------------------------------------------------------- reading


def _float_or_none(value: Any, record: str, fld: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(record, fld, f"expected a number or null, got {value!r}")
    if not math.isfinite(value):
        return None  # NaN / inf cannot rank; treat as unscored
    return float(value)


def candidate_from_row(row: dict[str, Any], record: str) -> Candidate:
    """Validate one scored row (the output of ``longreward score``)."""
    cid = row.get("id")
    if not isinstance(cid, (str, int)) or isinstance(cid, bool) or str(cid) == "":
        raise RecordError(record, "id", "missing; every scored answer needs an id")
    pid = row.get("prompt_id")
    if not isinstance(pid, (str, int)) or isinstance(pid, bool) or str(pid) == "":
        raise RecordError(record, "prompt_id", "missing; pairs are built per prompt_id")
    response = row.get("response")
    if not isinstance(response, str):
        raise RecordError(record, "response", "missing or not a string")
    reward = _float_or_none(row.get("reward"), record, "reward")
    raw_scores = row.get("scores") or {}
    if not isinstance(raw_scores, dict):
        raise RecordError(record, "scores", "expected an object of dimension -> score")
    scores = {str(k): _float_or_none(v, record, f"scores.{k}") for k, v in raw_scores.items()}
    dims = row.get("dimensions")
    if dims is None:
        # Older/other scorers: the dimensions are those with a score.
        dims = [k for k, v in scores.items() if v is not None]
    if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims):
        raise RecordError(record, "dimensions", "expected a list of dimension names")
    if reward is not None and not dims:
        raise RecordError(record, "dimensions", "a reward with no dimensions cannot be compared")
    index = row.get("sample_index")
    return Candidate(
        id=str(cid),
        prompt_id=str(pid),
        response=response,
        reward=reward,
        dimensions=tuple(dims),
        scores=scores,
        sample_index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        context=_document_or_none(row.get("context"), record),
        query=row.get("query") if isinstance(row.get("query"), str) else None,
        judge=row.get("judge") if isinstance(row.get("judge"), dict) else None,
        document=row.get("document") if isinstance(row.get("document"), str) else None,
        flags=len(row["flags"]) if isinstance(row.get("flags"), list) else 0,
    )


def _document_or_none(value: Any, record: str) -> str | None:
    """A scored row's own copy of its document (``score --keep-context``), joined the way
    every reader joins a document given as a list of strings; None when it has none."""
    if value is None:
        return None
    try:
        return document_text(value, record, "context")
    except RecordError:
        return None  # not a usable copy: the document is looked up by its hash instead


def iter_selections(
    by_prompt: dict[str, list[Candidate]], order: list[str], options: PairOptions
) -> Iterator[Selection]:
    for pid in order:
        yield select_pair(
            pid,
            by_prompt[pid],
            min_candidates=options.min_candidates,
            min_margin=options.min_margin,
            not_worse_on=options.not_worse_on,
        )
