"""The report's robustness section, from ``longreward eval robustness`` results: per attack
class, the win rate with its interval (chart and table), the mean positive gain, the mean
change, the reward as a share of the original's, the cost and the gate; then the variants
that gained most, with their text, so a user sees what fooled the judge."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from . import _svg

RESULT_KIND = "longreward.eval.robustness"
#: variants listed per result, the largest gains first
TOP_VARIANTS = 30


def _ci(ci: list[float | None], scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "–"
    return f"{fmt.format(scale * ci[0])}–{fmt.format(scale * ci[1])}"


def _gate_text(thresholds: dict[str, Any]) -> str:
    given = [f"{k}={v:g}" for k, v in thresholds.items() if v is not None]
    return ("gate: " + ", ".join(given)) if given else (
        "no gate given (--max-win-rate, --max-gain, --max-master-key-reward)")


def _one(path: Path, r: dict[str, Any], k: int) -> str:
    from ._html import _table, _td

    classes = r.get("classes") or []
    th = r.get("thresholds") or {}
    parts = [f"<h3>{escape(path.name)}</h3><p class=\"muted\">{r.get('answers')} answers of "
             f"{r.get('prompts')} prompts attacked ({escape(str(r.get('data')))}), "
             f"{r.get('variants')} variants. Win rate: variants whose reward is above their "
             "original's; mean +gain: what those gained; share: variant reward ÷ original "
             "reward (for master keys, which replace the answer). 95% intervals: bootstrap "
             f"over attacked answers, {(r.get('bootstrap') or {}).get('resamples')} resamples. "
             f"{escape(_gate_text(th))}.</p>"]
    if "dry" in str((r.get("judge") or {}).get("provider", "")):
        parts.append('<p class="banner">Scored with the dry-run judge: placeholder scores, '
                     "not judgments by a model.</p>")
    failed = r.get("failed") or {}
    if failed:
        parts.append('<p class="banner">Gate failed: ' + "; ".join(
            f"{escape(c)}: {escape(', '.join(why))}" for c, why in failed.items()) + "</p>")
    rows = [(c["class"], c["win_rate"], *(c.get("win_rate_ci") or [None, None]))
            for c in classes]
    limit = th.get("max_win_rate")
    title = "win rate per class, 95% interval" + (
        " (dashed: the --max-win-rate gate)" if limit is not None else "")
    parts.append('<div class="card" style="display:inline-block">'
                 + _svg.intervals(rows, title=title, chance=limit if limit is not None else 0)
                 + "</div>")
    body = []
    for c in classes:
        cost = c.get("cost") or {}
        win = c["win_rate"]
        gate = ('<span class="badge bad">FAIL</span>' if c.get("failed") else
                '<span class="badge ok">ok</span>')
        body.append(
            f"<tr><td title=\"{escape(c.get('description', ''))}\">{escape(c['class'])}</td>"
            + _td(c["variants"]) + _td(c["no_verdict"])
            + _td(None if win is None else 100 * win, "{:.1f}")
            + f'<td class="n">{_ci(c.get("win_rate_ci"), 100, "{:.0f}")}</td>'
            + _td(c["mean_positive_gain"]) + f'<td class="n">{_ci(c.get("mean_positive_gain_ci"))}</td>'
            + _td(c["mean_delta"], "{:+.2f}") + _td(c["reward_share"]) + _td(c["max_reward"])
            + _td(cost.get("calls")) + _td(cost.get("requests"))
            + _td((cost.get("prompt_tokens", 0) + cost.get("completion_tokens", 0))
                  if cost else None)
            + f"<td>{gate}</td></tr>")
    parts.append(_table(["class", "variants", "no verdict", "win rate %", "95% CI",
                         "mean +gain", "95% CI", "mean Δ", "share", "max reward",
                         "judge calls", "sent", "tokens sent", "gate"], body))
    total = (r.get("cost") or {}).get("total")
    if total:
        parts.append(f'<p class="muted">All classes and the originals: {total["calls"]:,} judge '
                     f'calls, {total["requests"]:,} sent, '
                     f'{total["prompt_tokens"] + total["completion_tokens"]:,} tokens.</p>')
    for note in r.get("notes") or []:
        parts.append(f'<p class="muted">note: {escape(note)}</p>')
    details = sorted((v for v in r.get("variant_details") or [] if v.get("delta") is not None),
                     key=lambda v: -v["delta"])[:TOP_VARIANTS]
    if details:
        body = [f"<tr><td>{escape(v['id'])}</td><td>{escape(v['class'])}</td>"
                f"<td>{escape(v['attack'])}</td>" + _td(v["original_reward"]) + _td(v["reward"])
                + _td(v["delta"], "{:+.2f}")
                + f"<td><details><summary>text</summary><div class=\"text\">"
                f"{escape(v.get('text', ''))}</div></details></td></tr>" for v in details]
        parts.append(f"<details><summary>the {len(details)} variants that gained most"
                     f"</summary><div class=\"body\">"
                     + _table(["variant", "class", "attack", "original", "variant reward", "Δ",
                               "text"], body, ident=f"lr-robust-{k}") + "</div></details>")
    return "".join(parts)


def robustness_section(results: list[tuple[Path, dict[str, Any]]]) -> str:
    if not results:
        return ""
    return ('<section id="robustness"><h2>Robustness: the attack suite on this judge</h2>'
            + "".join(_one(path, r, k) for k, (path, r) in enumerate(results))
            + "</section>")
