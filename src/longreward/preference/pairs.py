"""Chosen / rejected selection from scored candidates, and writing the pair dataset.

The paper (LongReward §3.3) samples 10 answers per prompt at temperature 1.0, takes the answer
with the highest reward as *chosen* and the one with the lowest as *rejected*. The reference
code additionally needs at least 5 scored answers before it builds a pair; we keep that as the
``min_candidates`` default.

Where we go further than the paper, and why:

- **Same dimensions, same judge only.** An answer whose faithfulness could not be scored has
  a reward averaged over three dimensions, not four, so its reward is not comparable with the
  others (DESIGN.md, "Reward"); nor is a reward from another judge (a scored file merged from
  two runs). Candidates of one prompt are therefore grouped by the set of dimensions that went
  into their reward and by the row's ``judge``, and the pair is built inside the *largest*
  group (ties: more dimensions first, then the sorted names) if that group has at least
  ``min_candidates`` answers. Smaller groups are ignored for that prompt.
- **Skips are counted, never silent.** A prompt yields no pair for exactly one reason:
  ``all_unscored``, ``too_few_candidates``, ``mixed_dimensions`` (enough scored answers, but no
  single judge and dimension set has enough), ``tie`` (highest reward equals lowest), ``below_margin``,
  ``dimension_rule`` (``not_worse_on`` failed or could not be checked), ``identical_answers``
  or ``missing_prompt``.
- **Ties inside the top or bottom** are broken deterministically (``sample_index``, then id), so
  the same scored file gives the same pairs however its rows are ordered (a resumed run writes
  rows in completion order).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import MissingDependencyError, RecordError
from ..io.files import iter_rows, write_rows
from ..io.records import load_prompts
from .formats import (
    DEFAULT_PROMPT_TEMPLATE,
    PAIR_FORMATS,
    PairExample,
    PairFormat,
    PairKeys,
    pair_to_row,
    render_prompt,
)

__all__ = [
    "SKIP_REASONS",
    "Candidate",
    "PairOptions",
    "PairsSummary",
    "Selection",
    "build_pairs",
    "load_prompts",
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

    format: PairFormat = Field("trl", description="trl, trl_standard, openrlhf or sharegpt")
    min_candidates: int = Field(5, ge=2, description="scored answers needed (same dimensions)")
    min_margin: float = Field(0.0, ge=0, description="skip pairs whose reward gap is smaller")
    not_worse_on: list[str] = Field(
        default_factory=list,
        description="dimensions on which chosen must score at least as high as rejected",
    )
    system_prompt: str | None = Field(None, description="system message put before the prompt")
    prompt_template: str = Field(DEFAULT_PROMPT_TEMPLATE, description="user-turn layout")
    prompt_key: str = "prompt"  # openrlhf column names
    chosen_key: str = "chosen"
    rejected_key: str = "rejected"
    write_parquet: bool = Field(True, description="also write <output stem>.parquet")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in PAIR_FORMATS:
            raise ValueError(f"unknown format {v!r}; choose one of {', '.join(PAIR_FORMATS)}")
        return v

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
        assert self.chosen.reward is not None and self.rejected.reward is not None
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
    chosen = min(group, key=lambda c: (-c.reward, c.order))  # type: ignore[operator]
    rejected = min(group, key=lambda c: (c.reward, c.order))
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
        context=row.get("context") if isinstance(row.get("context"), str) else None,
        query=row.get("query") if isinstance(row.get("query"), str) else None,
        judge=row.get("judge") if isinstance(row.get("judge"), dict) else None,
    )


# --------------------------------------------------------------------------- building


@dataclass
class PairsSummary:
    """What ``build_pairs`` did; printed by the CLI and written into the dataset card."""

    prompts: int = 0
    answers: int = 0
    pairs: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    empty_responses: int = 0
    errors: list[RecordError] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    card: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    judges: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "answers": self.answers,
            "pairs": self.pairs,
            "skipped": dict(self.skipped),
            "empty_responses": self.empty_responses,
            "rejected_records": len(self.errors),
            "outputs": self.outputs,
            "card": self.card,
            "stats": self.stats,
        }


def _group_candidates(
    path: Path, summary: PairsSummary
) -> tuple[dict[str, list[Candidate]], list[str]]:
    by_prompt: dict[str, list[Candidate]] = {}
    order: list[str] = []
    seen: set[str] = set()
    for label, item in iter_rows(path):
        if isinstance(item, RecordError):
            summary.errors.append(item)
            continue
        try:
            cand = candidate_from_row(item, label)
        except RecordError as exc:
            summary.errors.append(exc)
            continue
        if cand.id in seen:
            summary.errors.append(RecordError(label, "id", f"duplicate id {cand.id!r}; kept the first"))
            continue
        seen.add(cand.id)
        summary.answers += 1
        if not cand.response.strip():
            # An empty answer cannot be written as chosen/rejected (trainers reject it); it
            # is counted and left out rather than failing the prompt.
            summary.empty_responses += 1
            continue
        if cand.prompt_id not in by_prompt:
            by_prompt[cand.prompt_id] = []
            order.append(cand.prompt_id)
        by_prompt[cand.prompt_id].append(cand)
    return by_prompt, order


def _prompt_messages(
    sel: Selection,
    group: list[Candidate],
    prompts: dict[str, dict[str, Any]] | None,
    options: PairOptions,
) -> list[dict[str, str]] | None:
    assert sel.chosen is not None
    src = prompts.get(sel.prompt_id) if prompts else None
    context = next((c.context for c in group if c.context is not None), None)
    query = next((c.query for c in group if c.query), None)
    if context is None and src is not None:
        context = src["context"]
    if not query and src is not None:
        query = src["query"]
    if context is None or not query:
        return None
    messages = []
    if options.system_prompt:
        messages.append({"role": "system", "content": options.system_prompt})
    messages.append({"role": "user", "content": render_prompt(context, query, options.prompt_template)})
    return messages


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


def _describe(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.pstdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def _score_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stats: dict[str, Any] = {
        key: _describe([r[key] for r in rows]) for key in ("chosen_reward", "rejected_reward", "margin")
    }
    dims = sorted({d for r in rows for d in r["dimensions"]})
    per_dim = {}
    for d in dims:
        per_dim[d] = {
            side: _describe(
                [r[f"{side}_scores"][d] for r in rows if r[f"{side}_scores"].get(d) is not None]
            )
            for side in ("chosen", "rejected")
        }
    stats["dimensions"] = per_dim
    return stats


def build_pairs(
    scored_path: str | Path,
    output_path: str | Path,
    options: PairOptions | None = None,
    *,
    prompts_path: str | Path | None = None,
    prompt_fields: dict[str, str] | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
) -> PairsSummary:
    """Read scored answers, select one pair per prompt, write JSONL (+ Parquet) and a card.

    Pure of model calls, so it is simply recomputed on every run. Output order follows the
    prompts file when one is given, else the order in which prompt ids first appear.
    """
    import time

    started = time.perf_counter()
    options = options or PairOptions()
    output_path = Path(output_path)
    summary = PairsSummary()
    prompts = None
    if prompts_path is not None:
        prompts = load_prompts(prompts_path, errors=summary.errors, **(prompt_fields or {}))
    by_prompt, order = _group_candidates(Path(scored_path), summary)
    if prompts is not None:
        rank = {pid: i for i, pid in enumerate(prompts)}
        order.sort(key=lambda pid: rank.get(pid, len(rank)))
    summary.prompts = len(order)

    rows: list[dict[str, Any]] = []
    judges: dict[str, dict[str, Any]] = {}
    for sel in iter_selections(by_prompt, order, options):
        if sel.skip is not None:
            summary.skipped[sel.skip] += 1
            continue
        assert sel.chosen is not None and sel.rejected is not None
        messages = _prompt_messages(sel, by_prompt[sel.prompt_id], prompts, options)
        if messages is None:
            summary.skipped["missing_prompt"] += 1
            continue
        for c in (sel.chosen, sel.rejected):
            if c.judge:
                judges[json.dumps(c.judge, sort_keys=True)] = c.judge
        meta = {
            "prompt_id": sel.prompt_id,
            "chosen_id": sel.chosen.id,
            "rejected_id": sel.rejected.id,
            "chosen_reward": sel.chosen.reward,
            "rejected_reward": sel.rejected.reward,
            "margin": sel.margin,
            "chosen_scores": sel.chosen.scores,
            "rejected_scores": sel.rejected.scores,
            "dimensions": list(sel.chosen.dimensions),
        }
        pair = PairExample(prompt=messages, chosen=sel.chosen.response, rejected=sel.rejected.response,
                           meta=meta)
        rows.append(pair_to_row(pair, options.format, options.keys))

    summary.pairs = len(rows)
    summary.judges = list(judges.values())
    summary.stats = _score_stats(rows)
    # Both files are always derived from the output stem, so "-o pairs.jsonl" and
    # "-o pairs.parquet" produce the same two files.
    jsonl = output_path.with_suffix(".jsonl")
    write_rows(jsonl, rows)
    summary.outputs.append(str(jsonl))
    if options.write_parquet or output_path.suffix.lower() == ".parquet":
        pq_path = output_path.with_suffix(".parquet")
        write_parquet_rows(pq_path, rows)
        summary.outputs.append(str(pq_path))
    from ..io.files import write_rejected

    write_rejected(output_path, summary.errors)
    summary.seconds = time.perf_counter() - started
    card = write_card(output_path, options, summary, scored_path=str(scored_path))
    summary.card = str(card)
    if push_to_hub:
        push_rows_to_hub(rows, push_to_hub, card_path=card, private=private)
    return summary


def write_parquet_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Parquet needs one schema for all rows; ``write_rows`` infers it from the first row, so
    give every row every column (missing ones as null) first."""
    columns: dict[str, None] = {}
    for r in rows:
        for k in r:
            columns.setdefault(k, None)
    write_rows(path, [{k: r.get(k) for k in columns} for r in rows])


def card_path_for(output_path: str | Path) -> Path:
    """The dataset card lives beside the data: ``pairs.jsonl`` → ``pairs.md``."""
    return Path(output_path).with_suffix(".md")


def write_card(
    output_path: Path, options: PairOptions, summary: PairsSummary, *, scored_path: str
) -> Path:
    path = card_path_for(output_path)
    config = options.model_dump()
    fmt_note = {
        "trl": "TRL conversational preference (`prompt`/`chosen`/`rejected` as message lists)",
        "trl_standard": "TRL standard preference (`prompt`/`chosen`/`rejected` strings)",
        "openrlhf": f"OpenRLHF (`--prompt_key {options.prompt_key} --chosen_key {options.chosen_key}"
        f" --rejected_key {options.rejected_key}`)",
        "sharegpt": "LLaMA-Factory sharegpt preference (`conversations`/`chosen`/`rejected`, "
        "`ranking: true`)",
    }[options.format]
    lines = [
        "---",
        "tags: [dpo, preference, long-context, longreward]",
        "---",
        "",
        "# LongReward preference pairs",
        "",
        "Built by `longreward pairs`: per prompt, the highest-reward answer is *chosen* and the "
        "lowest-reward answer *rejected* (LongReward, arXiv 2410.21252, §3.3), comparing only "
        "answers scored on the same dimensions.",
        "",
        f"- Format: {fmt_note}",
        f"- Scored input: `{scored_path}`",
        "- Judge: "
        + (", ".join(f"{j.get('provider', '?')}/{j.get('model', '?')}" for j in summary.judges) or "unknown"),
        "",
        "## Counts",
        "",
        "| | |",
        "|---|---|",
        f"| prompts | {summary.prompts} |",
        f"| scored answers read | {summary.answers} |",
        f"| pairs | {summary.pairs} |",
    ]
    for reason in SKIP_REASONS:
        if summary.skipped.get(reason):
            lines.append(f"| skipped: {reason} | {summary.skipped[reason]} |")
    if summary.empty_responses:
        lines.append(f"| empty answers left out | {summary.empty_responses} |")
    if summary.errors:
        lines.append(f"| rejected records | {len(summary.errors)} |")
    lines += ["", "## Score statistics", "", "```json", json.dumps(summary.stats, indent=2), "```",
              "", "## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def push_rows_to_hub(
    rows: list[dict[str, Any]], repo_id: str, *, card_path: Path | None = None, private: bool = False
) -> None:
    """Upload the pairs as a Hub dataset (needs the ``hub`` extra and a logged-in token)."""
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError("--push-to-hub", "datasets", "hub") from exc
    ds = datasets.Dataset.from_list(rows)
    ds.push_to_hub(repo_id, private=private)
    if card_path is not None:
        from huggingface_hub import DatasetCard  # a dependency of datasets

        DatasetCard(card_path.read_text(encoding="utf-8")).push_to_hub(repo_id)
