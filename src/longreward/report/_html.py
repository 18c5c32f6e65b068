"""The report page: sections built from the inputs, as one self-contained HTML string."""

from __future__ import annotations

import re
import time
from collections import Counter
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from ..eval import AgreementResult, Diagnostic, MethodCost, diagnose_rows, pearson
from ..eval.facts import FACT_ROWS, fact_stats
from . import _svg
from ._flags import answer_flags, flags_section
from ._load import Inputs, ScoredFile
from ._robustness import robustness_section

DIMENSION_ORDER = ("helpfulness", "logicality", "faithfulness", "completeness")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _n(x: Any, fmt: str = "{:.2f}") -> str:
    if x is None:
        return "–"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return fmt.format(x)


def _td(x: Any, fmt: str = "{:.2f}") -> str:
    v = "" if x is None else f' data-v="{escape(str(x))}"'
    return f'<td class="n"{v}>{escape(_n(x, fmt))}</td>'


def _table(head: list[str], rows: list[str], *, sortable: bool = True, ident: str = "") -> str:
    cls = ' class="sortable"' if sortable else ""
    idattr = f' id="{ident}"' if ident else ""
    return (f"<table{cls}{idattr}><thead><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _dims(files: list[ScoredFile]) -> list[str]:
    seen: dict[str, None] = {}
    for f in files:
        for row in f.rows:
            for d in row.get("scores") or {}:
                seen.setdefault(d)
    return sorted(seen, key=lambda d: (DIMENSION_ORDER.index(d) if d in DIMENSION_ORDER
                                       else len(DIMENSION_ORDER), d))


# --------------------------------------------------------------------------- sections


def _scores_section(files: list[ScoredFile]) -> str:
    if not files:
        return ""
    parts = ['<section id="scores"><h2>Reward and dimensions</h2>']
    for f in files:
        dims = _dims([f])
        charts = [_svg.histogram([r.get("reward") for r in f.rows], title="reward", low=0,
                                 high=10, color="#1d2430")]
        for d in dims:
            charts.append(_svg.histogram([(r.get("scores") or {}).get(d) for r in f.rows],
                                         title=d, low=0, high=10))
        parts.append(f"<h3>{escape(f.path.name)}</h3><p class=\"muted\">{len(f.rows)} answers"
                     f" in {len({r.get('prompt_id') for r in f.rows})} prompts</p>")
        parts.append('<div class="grid">' + "".join(f'<div class="card">{c}</div>'
                                                     for c in charts) + "</div>")
        names = [*dims, "reward"]

        def value(row: dict[str, Any], name: str) -> float | None:
            return row.get("reward") if name == "reward" else (row.get("scores") or {}).get(name)

        matrix, counts = [], []
        for a in names:
            mrow, crow = [], []
            for b in names:
                both = [(value(r, a), value(r, b)) for r in f.rows]
                both = [(x, y) for x, y in both if x is not None and y is not None]
                mrow.append(pearson([x for x, _ in both], [y for _, y in both]))
                crow.append(len(both))
            matrix.append(mrow)
            counts.append(crow)
        parts.append('<div class="card" style="display:inline-block">'
                     + _svg.heatmap(names, matrix, counts,
                                    title="correlations between dimensions (Pearson r)")
                     + "</div>")
    parts.append("</section>")
    return "".join(parts)


def _pairs_section(pairs: list[tuple[Path, list[dict[str, Any]]]]) -> str:
    if not pairs:
        return ""
    parts = ['<section id="pairs"><h2>Chosen vs rejected</h2>']
    for path, rows in pairs:
        margins = [r.get("margin") for r in rows if isinstance(r.get("margin"), (int, float))]
        chosen = [r["chosen_reward"] for r in rows if isinstance(r.get("chosen_reward"), (int, float))]
        rejected = [r["rejected_reward"] for r in rows
                    if isinstance(r.get("rejected_reward"), (int, float))]
        parts.append(f"<h3>{escape(path.name)}</h3><p class=\"muted\">{len(rows)} pairs · "
                     f"mean chosen reward {_n(_mean(chosen))} · mean rejected "
                     f"{_n(_mean(rejected))} · mean margin {_n(_mean(margins))}</p>")
        parts.append('<div class="grid">' + "".join(f'<div class="card">{c}</div>' for c in (
            _svg.histogram(margins, title="reward margin (chosen − rejected)", low=0,
                           color="#237a3b"),
            _svg.histogram(chosen, title="chosen reward", low=0, high=10, color="#237a3b"),
            _svg.histogram(rejected, title="rejected reward", low=0, high=10,
                           color="#b3261e"))) + "</div>")
    parts.append("</section>")
    return "".join(parts)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _ci(ci: tuple[float | None, float | None]) -> str:
    return "–" if ci[0] is None or ci[1] is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


def _verdict_cell(v: str | None, label: str) -> str:
    if v is None:
        return '<td><span class="badge none">none</span></td>'
    if v == "tie":
        return '<td><span class="badge tie">tie</span></td>'
    ok = v == label
    return f'<td><span class="badge {"ok" if ok else "bad"}">{escape(v)}</span></td>'


def _agreement_section(results: list[tuple[Path, AgreementResult]]) -> str:
    if not results:
        return ""
    parts = ['<section id="agreement"><h2>Agreement with human labels</h2>']
    for k, (path, r) in enumerate(results):
        reward = r.reward
        rows = [(("  " if m.group == "dimension" else "") + m.name, m.accuracy, *m.ci)
                for m in r.methods]
        rows += [(f"− {m.removed}", m.accuracy, *m.ci) for m in r.ablation]
        subset = ("" if r.subset is None else
                  f" A subset: {r.prompts} of {r.subset.prompts_in_data} prompts.")
        parts.append(f"<h3>{escape(path.name)}</h3><p class=\"muted\">{r.pairs} pairs from "
                     f"{r.prompts} prompts ({escape(r.format)} data: {escape(r.data)}); "
                     f"{r.human_ties_left_out} human ties left out.{escape(subset)} Ties: "
                     f"{escape(r.tie_rule)} — {escape(r.tie_rule_text)}. 95% intervals: "
                     f"bootstrap over prompts, {r.bootstrap.resamples} resamples, seed "
                     f"{r.bootstrap.seed}. Wall time {r.seconds:.1f} s.</p>")
        if "dry" in str(r.judge.get("provider", "")):
            parts.append('<p class="banner">Scored with the dry-run judge: placeholder '
                         "scores, not judgments by a model.</p>")
        parts.append('<div class="card" style="display:inline-block">' + _svg.intervals(
            rows, title="accuracy with 95% interval (dashed: chance, dotted: reward)",
            reference=reward.accuracy if reward else None) + "</div>")
        body = []
        for m in [*r.methods, *r.ablation]:
            cost = m.cost
            name = m.name if m.removed is None else f"reward − {m.removed}"
            body.append(
                f"<tr><td>{escape(name)}</td><td>{escape(m.group)}</td>"
                + _td(None if m.accuracy is None else 100 * m.accuracy, "{:.1f}")
                + f'<td class="n">{_ci(m.ci)}</td>'
                + _td(m.n) + _td(m.agree) + _td(m.disagree) + _td(m.ties) + _td(m.abstained)
                + _td(cost.calls if cost else (0 if m.removed else None))
                + _td(cost.prompt_tokens if cost else None) + "</tr>")
        parts.append(_table(["method", "kind", "accuracy %", "95% CI", "n", "agree",
                             "disagree", "tie", "no verdict", "judge calls", "prompt tokens"],
                            body))
        parts.append(f'<p class="muted">Leave-one-out rewards recombined from stored scores: '
                     f"{r.ablation_requests} judge calls, "
                     f"{1000 * r.ablation_seconds:.1f} ms.</p>")
        for note in r.notes:
            parts.append(f'<p class="muted">Note: {escape(note)}</p>')
        if r.pair_details:
            names = list(r.pair_details[0].verdicts)
            body = []
            for p in sorted(r.pair_details, key=lambda p: p.verdicts.get("reward") == p.label):
                outcome = "agree" if p.verdicts.get("reward") == p.label else "other"
                body.append(
                    f'<tr data-outcome="{outcome}"><td>{escape(p.id)}</td>'
                    f"<td>{escape(p.label)}</td>" + _td(p.reward_a) + _td(p.reward_b)
                    + "".join(_verdict_cell(p.verdicts.get(n), p.label) for n in names)
                    + "</tr>")
            ident = f"lr-pairs-{k}"
            parts.append(f'<details><summary>pairs ({len(r.pair_details)}), the reward\'s '
                         'disagreements first</summary><div class="body"><div class="tools">'
                         f'<label><input type="checkbox" data-only-failures="{ident}"> only '
                         "pairs the reward did not get right</label></div>"
                         + _table(["pair", "human", "reward a", "reward b", *names], body,
                                  ident=ident) + "</div></details>")
    parts.append("</section>")
    return "".join(parts)


def _diagnostics_section(files: list[ScoredFile],
                         results: list[tuple[Path, AgreementResult]]) -> str:
    """Each agreement result's diagnostics; for a scored file no result covers, the ones
    its rows allow (no position bias or self-consistency: those need judge calls)."""
    blocks: list[tuple[str, list[Diagnostic]]] = [(p.name, r.diagnostics) for p, r in results
                                                  if r.diagnostics]
    covered = {Path(r.scored).name for _, r in results if r.diagnostics}  # (v1 results: none)
    blocks += [(f.path.name, diagnose_rows(f.rows)) for f in files
               if f.path.name not in covered and f.rows]
    if not blocks:
        return ""
    parts = ['<section id="diagnostics"><h2>When to trust the reward</h2>']
    for name, diags in blocks:
        body = [f'<tr data-status="{escape(d.status)}"><td>{escape(d.title)}</td>'
                + _td(d.value) + _td(d.n) + f"<td>{_STATUS_BADGE.get(d.status, '')}"
                f"{escape(d.reading)}</td></tr>" for d in diags]
        parts.append(f"<h3>{escape(name)}</h3>"
                     + _table(["check", "value", "n", "reading"], body, sortable=False))
    parts.append("</section>")
    return "".join(parts)


# "not measured" and "not recorded" say so in their reading
_STATUS_BADGE = {"ok": '<span class="badge ok">ok</span> ',
                 "warn": '<span class="badge bad">look</span> '}


def _facts_section(files: list[ScoredFile], results: list[tuple[Path, dict[str, Any]]]) -> str:
    columns: list[tuple[str, dict[str, Any]]] = []
    for f in files:
        for group, s in fact_stats(f.rows).items():
            columns.append((f.path.name if group == "all" else f"{f.path.name}: {group}", s))
    for _path, r in results:
        for fname, stats in zip(r.get("files", []), r.get("stats", []), strict=False):
            for group, s in stats.items():
                columns.append((f"{Path(fname).name}: {group}", s))
    if not columns:
        return ""
    body = ["<tr><td>" + escape(label) + "</td>" + "".join(_td(s.get(key), fmt)
                                                             for _, s in columns) + "</tr>"
            for label, key, fmt in FACT_ROWS]
    return ('<section id="facts"><h2>Statements and support (FactScore-style)</h2>'
            '<p class="muted">From the faithfulness details of the scored answers; no judge '
            "calls.</p>" + _table(["", *[c for c, _ in columns]], body, sortable=False)
            + "</section>")


def _reference_section(results: list[tuple[Path, dict[str, Any]]]) -> str:
    if not results:
        return ""
    parts = ['<section id="reference"><h2>Reference-answer grading</h2>']
    for path, r in results:
        body = [f"<tr><td>{escape(g)}</td>" + _td(v.get("score_x10")) + _td(v.get("answers"))
                + _td(v.get("graded")) + _td(v.get("unscored")) + "</tr>"
                for g, v in r.get("groups", {}).items()]
        parts.append(f"<h3>{escape(path.name)}</h3><p class=\"muted\">{escape(r.get('scale', ''))}"
                     "</p>" + _table(["group", "score ×10", "answers", "graded", "unscored"],
                                     body))
    parts.append("</section>")
    return "".join(parts)


def _row_usage(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per-dimension usage summed from the rows' details (statement grades included). Work
    shared between answers (the completeness extraction) is not in the rows: a lower bound."""
    out: dict[str, dict[str, int]] = {}

    def add(dim: str, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        acc = out.setdefault(dim, {})
        for k, v in usage.items():
            if isinstance(v, int):
                acc[k] = acc.get(k, 0) + v

    for row in rows:
        for dim, det in (row.get("details") or {}).items():
            if not isinstance(det, dict):
                continue
            add(dim, det.get("usage"))
            for s in det.get("statements") or []:
                if isinstance(s, dict):
                    add(dim, s.get("usage"))
    return out


def _cost_section(files: list[ScoredFile], results: list[tuple[Path, AgreementResult]]) -> str:
    blocks = []
    for path, r in results:
        body = []
        for m in r.methods:
            c = m.cost or MethodCost()
            body.append(f"<tr><td>{escape(m.name)}</td>" + _td(c.calls) + _td(c.requests)
                        + _td(c.cache_hits) + _td(c.prompt_tokens) + _td(c.completion_tokens)
                        + _td(c.cached_tokens) + "</tr>")
        cost = r.stats.get("cost_usd")
        blocks.append(f"<h3>{escape(path.name)}</h3>"
                      + _table(["method", "calls", "sent", "cache hits", "prompt tokens",
                                "completion tokens", "cached tokens"], body)
                      + (f'<p class="muted">estimated cost ${cost:.4f}</p>' if cost else ""))
    from_results = {Path(r.scored).name for _, r in results}
    for f in files:
        if f.path.name in from_results:
            continue  # its eval result above has the calls the scoring made
        by_dim = ((f.summary or {}).get("stats") or {}).get("by_dimension")
        source = f"the score run's summary ({f.run_dir}/summary.json)"
        if not by_dim:
            by_dim = _row_usage(f.rows)
            source = ("the rows' details (work shared between answers, such as the "
                      "completeness extraction, is not included)")
        if not by_dim:
            continue
        body = []
        for dim, c in by_dim.items():
            calls = c.get("calls", c.get("requests", 0) + c.get("cache_hits", 0))
            body.append(f"<tr><td>{escape(dim)}</td>" + _td(calls) + _td(c.get("prompt_tokens"))
                        + _td(c.get("completion_tokens")) + _td(c.get("cached_tokens"))
                        + "</tr>")
        blocks.append(f"<h3>{escape(f.path.name)}</h3><p class=\"muted\">From {escape(source)}."
                      "</p>" + _table(["dimension", "calls", "prompt tokens",
                                       "completion tokens", "cached tokens"], body))
    if not blocks:
        return ""
    return ('<section id="cost"><h2>Cost: calls and tokens</h2>' + "".join(blocks)
            + "</section>")


_DIGITS = re.compile(r"\d+")


def _unscored_section(files: list[ScoredFile]) -> str:
    counts: Counter[tuple[str, str]] = Counter()
    for f in files:
        for row in f.rows:
            for dim, reason in (row.get("unscored") or {}).items():
                short = _DIGITS.sub("N", str(reason))
                counts[(dim, short[:160] + ("…" if len(short) > 160 else ""))] += 1
    if not counts:
        body = '<p class="muted">Every dimension of every answer was scored.</p>'
    else:
        body = _table(["dimension", "reason (numbers as N)", "answers"],
                      [f"<tr><td>{escape(d)}</td><td>{escape(r)}</td>" + _td(n) + "</tr>"
                       for (d, r), n in counts.most_common()])
    return f'<section id="unscored"><h2>Unscored: reasons</h2>{body}</section>'


def _slowest_section(files: list[ScoredFile], inputs: Inputs) -> str:
    calls = []
    for path, r in inputs.agreement:
        calls += [{**c, "source": path.name} for c in r.slowest_calls]
    for path, raw in inputs.results:
        calls += [{**c, "source": path.name} for c in raw.get("slowest_calls") or []]
    for f in files:  # the score run's summary.json: stats are the judge client's snapshot
        calls += [{**c, "source": f.path.name}
                  for c in ((f.summary or {}).get("stats") or {}).get("slowest_calls") or []]
    calls.sort(key=lambda c: -c.get("seconds", 0))
    if not calls:
        body = ('<p class="muted">No call timings in these inputs: every call came from the '
                "cache, or no run summary was found next to the scored files (`longreward "
                "score` writes RUN/summary.json, `longreward eval` its result file).</p>")
    else:
        body = _table(["seconds", "step", "attempt", "prompt tokens", "completion tokens",
                       "from"],
                      [f"<tr>{_td(c.get('seconds'), '{:.3f}')}<td>{escape(str(c.get('tag')))}"
                       f"</td>{_td(c.get('attempt'))}{_td(c.get('prompt_tokens'))}"
                       f"{_td(c.get('completion_tokens'))}<td>{escape(c['source'])}</td></tr>"
                       for c in calls[:25]])
    return f'<section id="slowest"><h2>Slowest judge calls</h2>{body}</section>'


# --------------------------------------------------------------------------- drill-down


def _scores_badges(row: dict[str, Any]) -> str:
    out = []
    for d, v in (row.get("scores") or {}).items():
        out.append(f'<span class="muted">{escape(d[:4])}</span> {_n(v, "{:.1f}")}')
    return " · ".join(out)


def _evidence(doc: str | None, ev: dict[str, Any]) -> str:
    where = f"chunk {ev.get('chunk')}, characters {ev.get('start')}–{ev.get('end')}"
    if doc is None or not isinstance(ev.get("start"), int) or not isinstance(ev.get("end"), int):
        return f'<div class="evidence muted">{escape(where)} (document not available)</div>'
    return (f'<div class="evidence" title="{escape(where)}, retrieval score '
            f'{escape(str(ev.get("score")))}">{escape(doc[ev["start"]:ev["end"]].strip())}</div>')


def _statements(doc: str | None, det: dict[str, Any]) -> str:
    rows = det.get("statements") or []
    if not rows:
        note = det.get("note") or "no statements"
        return f'<p class="muted">{escape(str(note))}</p>'
    body = []
    for i, s in enumerate(rows, start=1):
        sup = s.get("support")
        badge = f'<span class="badge {escape(sup or "none")}">{escape(sup or "ungraded")}</span>'
        evidence = "".join(_evidence(doc, e) for e in s.get("evidence") or [])
        analysis = s.get("analysis") or s.get("error") or ""
        body.append(f"<tr><td class=\"n\">{i}</td><td>{escape(s.get('statement', ''))}</td>"
                    f"<td>{badge}</td><td><details><summary>evidence "
                    f"({len(s.get('evidence') or [])})</summary><div class=\"body\">{evidence}"
                    f"<p class=\"muted\">{escape(str(analysis))}</p></div></details></td></tr>")
    return _table(["#", "statement", "verdict", "evidence and judge's analysis"], body,
                  sortable=False)


def _points(det: dict[str, Any]) -> str:
    marks = det.get("marks")
    if marks:  # checklist completeness: each point with the judge's mark
        items = "".join(f"<li><b>{escape(str(m.get('position')))}</b> {escape(str(m.get('point')))}"
                        f" — {escape(str(m.get('coverage')))}</li>" for m in marks)
        return f"<h4>Checklist</h4><ul>{items}</ul>"
    findings = det.get("points") or []
    if not findings:
        return ""
    items = []
    for f in findings:
        pts = f.get("points")
        inner = ("<li class=\"muted\">extraction failed</li>" if pts is None else
                 "".join(f"<li>{escape(p)}</li>" for p in pts) or
                 '<li class="muted">no relevant information</li>')
        items.append(f"<li><b>{escape(str(f.get('position')))}</b><ul>{inner}</ul></li>")
    return f"<h4>Extracted points</h4><ul>{''.join(items)}</ul>"


def _counts(det: dict[str, Any]) -> str:
    """Faithfulness has no analysis of its own: say what its score is made of."""
    counts = det.get("counts")
    if isinstance(counts, dict):
        return (f"{det.get('n_statements', 0)} statements: " +
                ", ".join(f"{n} {k}" for k, n in counts.items()))
    return str(det.get("note") or "")


def _answer(f: ScoredFile, row: dict[str, Any]) -> str:
    doc = f.document(row)
    details = row.get("details") or {}
    dims = []
    for d, v in (row.get("scores") or {}).items():
        det = details.get(d) or {}
        why = ((row.get("unscored") or {}).get(d) or (row.get("answer_caused") or {}).get(d)
               or det.get("analysis") or _counts(det))
        extra = ""
        if det.get("errors"):
            extra = "<ul>" + "".join(f"<li>{escape(str(e))}</li>" for e in det["errors"]) + "</ul>"
        dims.append(f"<tr><td>{escape(d)}</td>{_td(v, '{:.1f}')}<td><div class=\"text\">"
                    f"{escape(str(why))}</div>{extra}</td></tr>")
    faith = details.get("faithfulness")
    comp = details.get("completeness")
    return (f'<details class="answer"><summary><b>{escape(str(row.get("id")))}</b> · reward '
            f'{_n(row.get("reward"), "{:.2f}")} · {_scores_badges(row)}</summary>'
            f'<div class="body"><div class="text">{escape(str(row.get("response", "")))}</div>'
            + _table(["dimension", "score", "analysis / reason"], dims, sortable=False)
            + (f"<h4>Statements</h4>{_statements(doc, faith)}" if isinstance(faith, dict)
               else "")
            + (_points(comp) if isinstance(comp, dict) else "") + answer_flags(row)
            + "</div></details>")


def _prompts_section(files: list[ScoredFile], max_prompts: int) -> str:
    groups: dict[tuple[str, str], list[tuple[ScoredFile, dict[str, Any]]]] = {}
    for f in files:
        for row in f.rows:
            groups.setdefault((f.path.name, str(row.get("prompt_id"))), []).append((f, row))
    if not groups:
        return ""
    keys = list(groups)[:max_prompts]
    parts = ['<section id="prompts"><h2>Prompts: answers, statements, points</h2>'
             '<div class="tools"><input id="lr-search" type="search" '
             'placeholder="filter by prompt id, question or answer id">'
             '<button data-expand="open">expand all</button>'
             '<button data-expand="close">collapse all</button>'
             f'<span id="lr-prompt-count" class="muted">{len(keys)} shown</span></div>']
    if len(groups) > max_prompts:
        parts.append(f'<p class="muted">The first {max_prompts} of {len(groups)} prompts '
                     "(raise --max-prompts to include more).</p>")
    for key in keys:
        members = sorted(groups[key], key=lambda fr: -(fr[1].get("reward") or -1))
        first = members[0][1]
        search = " ".join([key[1], str(first.get("query", "")),
                           *(str(r.get("id")) for _, r in members)]).lower()
        rewards = [r.get("reward") for _, r in members if r.get("reward") is not None]
        query = str(first.get("query", ""))
        parts.append(
            f'<details class="prompt" data-search="{escape(search[:2000])}"><summary>'
            f"<b>{escape(key[1])}</b> <span class=\"muted\">({escape(key[0])})</span> · "
            f"{len(members)} answers · rewards {_n(min(rewards) if rewards else None)}–"
            f"{_n(max(rewards) if rewards else None)} · {escape(query[:120])}</summary>"
            f'<div class="body"><p><b>Question:</b> {escape(query)}</p>'
            + "".join(_answer(f, r) for f, r in members) + "</div></details>")
    parts.append("</section>")
    return "".join(parts)


# --------------------------------------------------------------------------- page


def render(inputs: Inputs, *, title: str = "longreward report", max_prompts: int = 100) -> str:
    sections = [
        ("scores", _scores_section(inputs.scored)),
        ("pairs", _pairs_section(inputs.pairs)),
        ("agreement", _agreement_section(inputs.agreement)),
        ("robustness", robustness_section(inputs)),
        ("diagnostics", _diagnostics_section(inputs.scored, inputs.agreement)),
        ("facts", _facts_section(inputs.scored, inputs.of_kind("longreward.eval.facts"))),
        ("reference", _reference_section(inputs.of_kind("longreward.eval.reference"))),
        ("cost", _cost_section(inputs.scored, inputs.agreement)),
        ("unscored", _unscored_section(inputs.scored) if inputs.scored else ""),
        ("flags", flags_section(inputs.scored)),
        ("slowest", _slowest_section(inputs.scored, inputs)),
        ("prompts", _prompts_section(inputs.scored, max_prompts)),
    ]
    nav = "".join(f'<a href="#{k}">{k}</a>' for k, html in sections if html)
    sources = ", ".join(escape(p.name) for p in
                        [*(f.path for f in inputs.scored), *(p for p, _ in inputs.pairs),
                         *(p for p, _ in inputs.agreement), *(p for p, _ in inputs.results)])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network at view time: styles and script are inline; nothing else is loaded.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{_asset('report.css')}</style>"
        f"<script>{_asset('report.js')}</script></head><body>"
        f'<header><span id="lr-status">static</span><h1>{escape(title)}</h1>'
        f'<div class="sub">{sources} · made {time.strftime("%Y-%m-%d %H:%M")}</div></header>'
        f'<nav>{nav}</nav><div id="lr-errors"></div><main>'
        + "".join(html for _, html in sections) + "</main></body></html>\n")
