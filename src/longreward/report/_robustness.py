"""The report's robustness section, from ``longreward eval robustness`` results: per attack
class, the win rate with its interval (chart and table), the mean positive gain, the mean
change, the reward as a share of the original's, the cost and the gate; then the variants
that gained most, with their text, so a user sees what fooled the judge."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from . import _svg
from ._load import Inputs

#: variants listed per result, the largest gains first
TOP_VARIANTS = 30


def _ci(ci: tuple[float | None, float | None], scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    if ci[0] is None or ci[1] is None:
        return "–"
    return f"{fmt.format(scale * ci[0])}–{fmt.format(scale * ci[1])}"


def _gate_text(thresholds: dict[str, Any]) -> str:
    given = [f"{k}={v:g}" for k, v in thresholds.items() if v is not None]
    return ("gate: " + ", ".join(given)) if given else (
        "no gate given (--max-win-rate, --max-gain, --max-master-key-reward)")


def _one(path: Path, raw: dict[str, Any], k: int) -> str:
    from ..eval.robustness import RobustnessResult
    from ._html import _table, _td

    r = RobustnessResult.from_json(raw, where=str(path))
    parts = [f"<h3>{escape(path.name)}</h3><p class=\"muted\">{r.answers} answers of "
             f"{r.prompts} prompts attacked ({escape(r.data)}), {r.variants} variants. Win "
             "rate: variants whose reward is above their original's; mean +gain: what those "
             "gained; share: variant reward ÷ original reward (for master keys, which replace "
             "the answer). 95% intervals: bootstrap over attacked answers, "
             f"{r.bootstrap.resamples} resamples. {escape(_gate_text(r.thresholds))}.</p>"]
    if "dry" in str(r.judge.get("provider", "")):
        parts.append('<p class="banner">Scored with the dry-run judge: placeholder scores, '
                     "not judgments by a model.</p>")
    if r.failed:
        parts.append('<p class="banner">Gate failed: ' + "; ".join(
            f"{escape(c)}: {escape(', '.join(why))}" for c, why in r.failed.items()) + "</p>")
    limit = r.thresholds.get("max_win_rate")
    title = "win rate per class, 95% interval" + (
        " (dashed: the --max-win-rate gate)" if limit is not None else "")
    parts.append('<div class="card" style="display:inline-block">' + _svg.intervals(
        [(c.name, c.win_rate, *c.win_rate_ci) for c in r.classes], title=title,
        chance=limit if limit is not None else 0) + "</div>")
    body = []
    for c in r.classes:
        cost = c.cost
        gate = ('<span class="badge bad">FAIL</span>' if c.failed else
                '<span class="badge ok">ok</span>')
        body.append(
            f"<tr><td title=\"{escape(c.description)}\">{escape(c.name)}</td>"
            + _td(c.variants) + _td(c.no_verdict)
            + _td(None if c.win_rate is None else 100 * c.win_rate, "{:.1f}")
            + f'<td class="n">{_ci(c.win_rate_ci, 100, "{:.0f}")}</td>'
            + _td(c.mean_positive_gain) + f'<td class="n">{_ci(c.mean_positive_gain_ci)}</td>'
            + _td(c.mean_delta, "{:+.2f}") + _td(c.reward_share) + _td(c.max_reward)
            + _td(cost.calls if cost else None) + _td(cost.requests if cost else None)
            + _td(cost.prompt_tokens + cost.completion_tokens if cost else None)
            + f"<td>{gate}</td></tr>")
    parts.append(_table(["class", "variants", "no verdict", "win rate %", "95% CI",
                         "mean +gain", "95% CI", "mean Δ", "share", "max reward",
                         "judge calls", "sent", "tokens sent", "gate"], body))
    if r.cost_total:
        t = r.cost_total
        parts.append(f'<p class="muted">All classes and the originals: {t.calls:,} judge '
                     f"calls, {t.requests:,} sent, "
                     f"{t.prompt_tokens + t.completion_tokens:,} tokens.</p>")
    for note in r.notes:
        parts.append(f'<p class="muted">note: {escape(note)}</p>')
    top = sorted((v for v in r.variant_details if v.delta is not None),
                 key=lambda v: -(v.delta or 0))[:TOP_VARIANTS]
    if top:
        body = [f"<tr><td>{escape(v.id)}</td><td>{escape(v.attack_class)}</td>"
                f"<td>{escape(v.attack)}</td>" + _td(v.original_reward) + _td(v.reward)
                + _td(v.delta, "{:+.2f}")
                + f"<td><details><summary>text</summary><div class=\"text\">"
                f"{escape(v.text)}</div></details></td></tr>" for v in top]
        parts.append(f"<details><summary>the {len(top)} variants that gained most"
                     f"</summary><div class=\"body\">"
                     + _table(["variant", "class", "attack", "original", "variant reward", "Δ",
                               "text"], body, ident=f"lr-robust-{k}") + "</div></details>")
    return "".join(parts)


def robustness_section(inputs: Inputs) -> str:
    from ..eval.robustness import RESULT_KIND

    results = inputs.of_kind(RESULT_KIND)
    if not results:
        return ""
    return ('<section id="robustness"><h2>Robustness: the attack suite on this judge</h2>'
            + "".join(_one(path, r, k) for k, (path, r) in enumerate(results))
            + "</section>")
