"""The report's view of flagged answers (``reward.injection``) and of dimensions the answer's
own text set to their minimum: a section with the counts, and the spans inside each answer."""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import Any

from ..reward.injection import Flag, copy_reasks, flag_counts
from ._load import ScoredFile


def flags_section(files: list[ScoredFile]) -> str:
    """Counts over every scored row: answers flagged, flags by kind, and dimensions scored 0
    because of the answer, with the most frequent reasons."""
    answers = flagged = floored = dropped = 0
    kinds: Counter[str] = Counter()
    caused: Counter[str] = Counter()
    copies = 0
    for f in files:
        for row in f.rows:
            answers += 1
            flags = row.get("flags") or []
            if flags:
                flagged += 1
                kinds.update(flag_counts(flags))
            caused.update((row.get("answer_caused") or {}).keys())
            copies += copy_reasks(row.get("details") or {})
            floored += bool(row.get("floor"))
            faith = (row.get("details") or {}).get("faithfulness") or {}
            dropped += int(faith.get("n_dropped") or 0)
    if not answers:
        return ""
    grounding = (f"<p>Content grounding: {floored} of {answers} answers got the non-answer "
                 f"floor (no grounded statement, no covered point, low helpfulness: 0 on "
                 f"every dimension); {dropped} statements of the judge's split were dropped as "
                 "not grounded in the answer's own text.</p>")
    if not flagged and not caused and not copies:
        body = ('<p class="muted">No answer holds verdict-shaped or judge-addressed text, and '
                "no dimension was set to 0 because of an answer's text.</p>")
    else:
        rate = f"{flagged} of {answers} answers ({100.0 * flagged / answers:.1f}%)"
        rows = "".join(
            f"<tr><td>{escape(k)}</td><td>{Flag(k, 0, 0, '').family}</td>"
            f'<td class="n">{n}</td></tr>' for k, n in kinds.most_common())
        dims = "".join(f'<tr><td>{escape(d)}</td><td class="n">{n}</td></tr>'
                       for d, n in caused.most_common())
        body = (f"<p>Flagged: {rate}. Flagged text can only lower a score: a flagged answer is "
                "judged with and without its flagged spans and keeps the lower score; a "
                "dimension is set to 0 when the answer's text made the judge's verdict "
                "unreadable, or the judge kept copying the answer. Judge replies copied from "
                f"the answer (re-asked): {copies}.</p>"
                + (f"<table><thead><tr><th>kind</th><th>family</th><th>flags</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table>" if rows else "")
                + (f"<h4>Dimensions set to 0 by the answer's text</h4><table><thead><tr>"
                   f"<th>dimension</th><th>answers</th></tr></thead><tbody>{dims}</tbody>"
                   "</table>" if dims else ""))
    return (f'<section id="flags"><h2>Flags: text aimed at the judge</h2>{body}{grounding}'
            "</section>")


def answer_flags(row: dict[str, Any]) -> str:
    """The flagged spans of one answer, and its dimensions set to 0 by its text."""
    flags = row.get("flags") or []
    caused = row.get("answer_caused") or {}
    floor = row.get("floor")
    if not flags and not caused and not floor:
        return ""
    items = "".join(f"<li><b>{escape(str(f.get('kind')))}</b> at {f.get('start')}–{f.get('end')}: "
                    f"<code>{escape(str(f.get('text', ''))[:200])}</code></li>" for f in flags)
    why = "".join(f"<li><b>{escape(d)}</b> set to 0: {escape(str(r))}</li>"
                  for d, r in caused.items())
    if floor:
        why = f"<li><b>every dimension</b> set to 0: {escape(str(floor))}</li>" + why
    return f'<h4>Flags</h4><ul class="flags">{why}{items}</ul>'
