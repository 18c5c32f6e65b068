"""When to trust the reward: checks computed from scored rows (and, where a method asked the
judge twice, from its two verdicts), each with a one-line reading.

- **position bias**: how often a pairwise judge changes its verdict when the two answers swap
  places, and which place it favours. Any method that records ``orders`` (two verdicts per
  pair, the second asked with the answers swapped) is measured: today the ``pairwise``
  baseline; a listwise mode run in two orders records the same.
- **length**: Spearman's rho between the reward and the answer's length (characters), and how
  often the longer of two answers to one prompt gets the higher reward.
- **ties**: the share of prompts whose best and worst answers tie, so no pair can be chosen
  from them (and, over all within-prompt pairs, the share of tied pairs).
- **self-consistency** (opt-in, it costs calls): the spread of the reward when the same answer
  is rescored at T > 0, and how often a pair's verdict flips between rescorings.
- **dimension correlations**: Pearson's r between every two dimensions over the answers; two
  that move together add little to each other, a constant one ranks nothing.
- **injection**: the share of answers flagged for text aimed at the judge (the row's ``flags``
  list, written by the scorer; "not recorded" when no row carries it).

Pure functions over plain rows: the numbers can be checked by hand. Thresholds for the
readings are rules of thumb, stated in each reading's wording ("mostly", "leans"), not tests.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

from ._result import Diagnostic
from ._stats import TIE_TOLERANCE, Verdict, pearson, spearman

#: row fields that may hold an answer's injection flags (a list of flagged spans, each
#: ``{kind, start, end, text}`` as ``reward.injection`` writes them); the first present is read
INJECTION_FIELDS = ("flags", "injection_flags")

Row = Mapping[str, Any]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _reward(row: Row) -> float | None:
    r = row.get("reward")
    return float(r) if isinstance(r, (int, float)) and not isinstance(r, bool) else None


def _score(row: Row, dim: str) -> float | None:
    v = (row.get("scores") or {}).get(dim)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _by_prompt(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(str(row.get("prompt_id")), []).append(row)
    return out


# --------------------------------------------------------------------------- position bias


def position_bias(orders: Mapping[str, Sequence[tuple[Verdict, Verdict]]]) -> Diagnostic:
    """``orders[method]``: per pair, the verdict asked in the given order and the one asked with
    the answers swapped (both mapped back to "a"/"b"/"tie"; None when a call failed)."""
    per: dict[str, dict[str, Any]] = {}
    for method, got in orders.items():
        both = [(x, y) for x, y in got if x is not None and y is not None]
        if not both:
            continue
        flips = sum(1 for x, y in both if x != y)
        # first place won both times: "a" straight, and "b" (then in first place) swapped
        first = sum(1 for x, y in both if x == "a" and y == "b")
        second = sum(1 for x, y in both if x == "b" and y == "a")
        per[method] = {"pairs": len(both), "flips": flips, "rate": flips / len(both),
                       "favours_first": first, "favours_second": second}
    title = "position bias (verdict changes when the answers swap places)"
    if not per:
        return Diagnostic(name="position_bias", title=title, value=None, status="not_measured",
                          reading="not measured: no method asked in both orders (add "
                                  "--baselines pairwise)")
    name, d = max(per.items(), key=lambda kv: kv[1]["rate"])
    rate = d["rate"]
    side = ("the first place" if d["favours_first"] > d["favours_second"] else
            "the second place" if d["favours_second"] > d["favours_first"] else "neither place")
    if rate >= 0.3:
        reading = (f"{name} changes its verdict in {_pct(rate)} of pairs when the answers swap "
                   f"places (it favours {side}): a single-order pairwise judgment is unreliable "
                   "here; keep both orders")
    elif rate >= 0.1:
        reading = (f"{name} changes its verdict in {_pct(rate)} of pairs when the answers swap "
                   f"places (favouring {side}): asking in both orders matters")
    else:
        reading = f"order barely matters: {name} changes its verdict in {_pct(rate)} of pairs"
    return Diagnostic(name="position_bias", title=title, value=rate, n=d["pairs"],
                      status="warn" if rate >= 0.1 else "ok", reading=reading,
                      details={"methods": per})


# --------------------------------------------------------------------------- length


def length_bias(rows: Sequence[Row]) -> Diagnostic:
    """Spearman's rho of reward against answer length, and within prompts how often the longer
    answer of two with different rewards has the higher one."""
    title = "length (reward vs answer characters)"
    pts = [(len(str(r.get("response") or "").strip()), _reward(r)) for r in rows]
    pts = [(n, x) for n, x in pts if x is not None]
    rho = spearman([float(n) for n, _ in pts], [x for _, x in pts]) if len(pts) >= 3 else None
    longer_wins = decided = 0
    for group in _by_prompt(rows).values():
        scored = [(len(str(r.get("response") or "").strip()), _reward(r)) for r in group]
        scored = [(n, x) for n, x in scored if x is not None]
        for (na, xa), (nb, xb) in combinations(scored, 2):
            if na == nb or abs(xa - xb) <= TIE_TOLERANCE:
                continue
            decided += 1
            longer_wins += (na > nb) == (xa > xb)
    share = longer_wins / decided if decided else None
    details = {"spearman": rho, "answers": len(pts), "within_prompt_pairs": decided,
               "longer_wins": share}
    if rho is None:
        return Diagnostic(name="length", title=title, value=None, n=len(pts),
                          status="not_measured", details=details,
                          reading="not measured: fewer than 3 scored answers, or all of one "
                                  "length or one reward")
    pair_note = (f"; within a prompt the longer answer wins {_pct(share)} of {decided} pairs"
                 if share is not None else "")
    if abs(rho) >= 0.5:
        sense = "length" if rho > 0 else "shortness"
        reading = f"the reward mostly measures {sense} here (rho = {rho:.2f}){pair_note}"
    elif abs(rho) >= 0.3:
        sense = "longer" if rho > 0 else "shorter"
        reading = f"the reward leans toward {sense} answers (rho = {rho:.2f}){pair_note}"
    else:
        reading = f"length explains little of the reward (rho = {rho:.2f}){pair_note}"
    return Diagnostic(name="length", title=title, value=rho, n=len(pts),
                      status="warn" if abs(rho) >= 0.5 else "ok", reading=reading,
                      details=details)


# --------------------------------------------------------------------------- ties


def tie_rate(rows: Sequence[Row], mode: str | None = None) -> Diagnostic:
    """Among prompts with at least two scored answers: the share whose best and worst rewards
    tie (no pair can be chosen), and the share of tied within-prompt pairs. ``mode`` names
    another scoring mode of the same answers (e.g. "integer verdicts"), measured beside the
    reward's own: the diagnostic is then ``ties (MODE)``."""
    title = "ties (best and worst answer of a prompt tie)"
    name = "ties"
    if mode:
        title, name = f"ties with {mode} (best and worst tie)", f"ties ({mode})"
    prompts = tied = pairs = tied_pairs = 0
    for group in _by_prompt(rows).values():
        rewards = [x for x in (_reward(r) for r in group) if x is not None]
        if len(rewards) < 2:
            continue
        prompts += 1
        tied += max(rewards) - min(rewards) <= TIE_TOLERANCE
        for a, b in combinations(rewards, 2):
            pairs += 1
            tied_pairs += abs(a - b) <= TIE_TOLERANCE
    details = {"prompts": prompts, "tied_prompts": tied, "pairs": pairs,
               "tied_pairs": tied_pairs, "pair_tie_rate": tied_pairs / pairs if pairs else None}
    if not prompts:
        return Diagnostic(name=name, title=title, value=None, status="not_measured",
                          details=details,
                          reading="not measured: no prompt has two scored answers")
    rate = tied / prompts
    pair_note = f" ({_pct(tied_pairs / pairs)} of {pairs} within-prompt pairs tie)"
    if rate >= 0.2:
        reading = (f"{_pct(rate)} of prompts give no pair: their best and worst answers tie"
                   f"{pair_note}; verdicts are too coarse to rank these answers (more samples, "
                   "or finer verdicts)")
    elif rate > 0:
        reading = f"{_pct(rate)} of prompts give no pair (best and worst tie){pair_note}"
    else:
        reading = f"no prompt's best and worst answers tie{pair_note}"
    return Diagnostic(name=name, title=title, value=rate, n=prompts,
                      status="warn" if rate >= 0.2 else "ok", reading=reading, details=details)


# --------------------------------------------------------------------------- self-consistency


def self_consistency(repeats: Mapping[str, Sequence[float | None]],
                     pairs: Sequence[tuple[str, str]] = (), *, temperature: float,
                     calls: int = 0, prompt_tokens: int = 0,
                     reference_gap: float | None = None) -> Diagnostic:
    """``repeats[answer]``: its reward in each rescoring at ``temperature``; ``pairs``: answer
    pairs whose verdict flips are counted when both were rescored. ``reference_gap``: the mean
    absolute reward gap of the labelled pairs, to say whether the noise is small beside it."""
    title = f"self-consistency (reward spread when rescored at T={temperature:g})"
    spreads: dict[str, float] = {}
    for aid, values in repeats.items():
        got = [v for v in values if v is not None]
        if len(got) >= 2:
            spreads[aid] = statistics.stdev(got)
    flips = both = 0
    for a, b in pairs:
        va, vb = repeats.get(a), repeats.get(b)
        if not va or not vb:
            continue
        verdicts = {("a" if x > y + TIE_TOLERANCE else "b" if y > x + TIE_TOLERANCE else "tie")
                    for x, y in zip(va, vb, strict=False) if x is not None and y is not None}
        if verdicts:
            both += 1
            flips += len(verdicts) > 1
    details = {"temperature": temperature, "answers": len(spreads),
               "repeats": max((len(v) for v in repeats.values()), default=0),
               "max_sd": max(spreads.values(), default=None), "pairs": both,
               "pairs_flipped": flips, "calls": calls, "prompt_tokens": prompt_tokens,
               "per_answer_sd": spreads}
    if not spreads:
        return Diagnostic(name="self_consistency", title=title, value=None,
                          status="not_measured", details=details,
                          reading="not measured: no answer was scored twice (each rescoring "
                                  "left it unscored)")
    mean_sd = sum(spreads.values()) / len(spreads)
    flip_note = (f"; {flips} of {both} pairs change verdict between rescorings" if both else "")
    noisy = (reference_gap is not None and mean_sd >= reference_gap / 2) or mean_sd >= 1.0
    if noisy:
        gap = f" beside a mean gap of {reference_gap:.2f} between paired answers" \
            if reference_gap is not None else ""
        reading = (f"rescoring moves the reward by ±{mean_sd:.2f} on average{gap}{flip_note}: "
                   "its verdicts are partly noise at this temperature")
    else:
        reading = (f"stable: rescoring moves the reward by ±{mean_sd:.2f} on average"
                   f"{flip_note}")
    return Diagnostic(name="self_consistency", title=title, value=mean_sd, n=len(spreads),
                      status="warn" if noisy else "ok", reading=reading, details=details)


def self_consistency_not_run() -> Diagnostic:
    return Diagnostic(name="self_consistency", title="self-consistency (reward spread when "
                      "rescored at T > 0)", value=None, status="not_measured",
                      reading="not measured: it costs calls; ask for it with "
                              "--self-consistency N (answers to rescore)")


# --------------------------------------------------------------------------- dimensions


def dimension_correlations(rows: Sequence[Row], dims: Sequence[str]) -> Diagnostic:
    """Pearson's r between every two dimensions over the answers scored on both; the strongest
    pair is the headline, a dimension with one value throughout is named."""
    title = "correlation between dimensions (Pearson r)"
    matrix: dict[str, dict[str, float | None]] = {}
    strongest: tuple[str, str, float] | None = None
    for a, b in combinations(dims, 2):
        both = [(_score(r, a), _score(r, b)) for r in rows]
        xy = [(x, y) for x, y in both if x is not None and y is not None]
        r = pearson([x for x, _ in xy], [y for _, y in xy])
        matrix.setdefault(a, {})[b] = r
        if r is not None and (strongest is None or abs(r) > abs(strongest[2])):
            strongest = (a, b, r)
    constant = []
    for d in dims:
        values = {_score(r, d) for r in rows} - {None}
        if len(values) == 1:
            constant.append(f"{d} (always {next(iter(values)):g})")
    n = sum(1 for r in rows if _reward(r) is not None)
    details = {"matrix": matrix, "constant": constant}
    const_note = (f"; constant, so it ranks nothing: {', '.join(constant)}" if constant else "")
    if len(dims) < 2 or strongest is None:
        reading = ("not measured: fewer than two dimensions with varying scores"
                   + const_note)
        return Diagnostic(name="dimension_correlations", title=title, value=None, n=n,
                          status="warn" if constant else "not_measured", reading=reading,
                          details=details)
    a, b, r = strongest
    if abs(r) >= 0.8:
        reading = (f"{a} and {b} move together (r = {r:.2f}): here they measure much the same "
                   f"thing{const_note}")
    else:
        reading = (f"the dimensions carry separate information (strongest: {a} and {b}, "
                   f"r = {r:.2f}){const_note}")
    return Diagnostic(name="dimension_correlations", title=title, value=r, n=n,
                      status="warn" if abs(r) >= 0.8 or constant else "ok", reading=reading,
                      details=details)


# --------------------------------------------------------------------------- injection


def injection_flags(row: Row) -> Any:
    """The row's injection flags, or None when the row does not record them."""
    for key in INJECTION_FIELDS:
        if key in row:
            return row[key]
    return None


def injection_rate(rows: Sequence[Row]) -> Diagnostic:
    title = "answers flagged for injection (verdict-shaped text)"
    recorded = [injection_flags(r) for r in rows]
    recorded = [f for f in recorded if f is not None]
    if not recorded:
        return Diagnostic(name="injection", title=title, value=None, status="not_recorded",
                          reading="not recorded: these rows carry no injection flags (the "
                                  "scorer that wrote them does not flag verdict-shaped text)")
    flagged = sum(1 for f in recorded if f)
    rate = flagged / len(recorded)
    kinds: Counter[str] = Counter(
        str(f.get("kind")) for flags in recorded if isinstance(flags, list)
        for f in flags if isinstance(f, dict))
    if flagged:
        by_kind = f" ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})" if kinds else ""
        reading = (f"{flagged} of {len(recorded)} answers ({_pct(rate)}) hold text aimed at "
                   f"the judge{by_kind}: look at them before trusting their rewards")
    else:
        reading = f"no answer of {len(recorded)} holds text aimed at the judge"
    return Diagnostic(name="injection", title=title, value=rate, n=len(recorded),
                      status="warn" if flagged else "ok", reading=reading,
                      details={"flagged": flagged, "by_kind": dict(kinds)})


# --------------------------------------------------------------------------- all


def diagnose_rows(rows: Sequence[Row], dims: Sequence[str] | None = None) -> list[Diagnostic]:
    """The checks that need only scored rows: length, ties, dimension correlations,
    injection flags."""
    if dims is None:
        seen: dict[str, None] = {}
        for r in rows:
            for d in r.get("scores") or {}:
                seen.setdefault(d)
        dims = list(seen)
    return [length_bias(rows), tie_rate(rows), dimension_correlations(rows, dims),
            injection_rate(rows)]


def mean_abs_gap(pairs: Iterable[tuple[float | None, float | None]]) -> float | None:
    gaps = [abs(a - b) for a, b in pairs if a is not None and b is not None
            and math.isfinite(a) and math.isfinite(b)]
    return sum(gaps) / len(gaps) if gaps else None
