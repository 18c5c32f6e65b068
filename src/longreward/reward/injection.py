"""Text in an answer that is shaped like a verdict or addressed to the judge, found and flagged.

The policy trained against this reward searches for text that raises it. The verdict rules
(``judge._verdict``) make sure such text cannot *be* the verdict; this module makes it
*visible*: each flag names its kind and the span of the answer it matched, and the flags go
into the output row (``flags``), the score summary, serve's ``extra_logs`` and ``/metrics``,
and the HTML report. A rising flag rate during an RL run is the policy learning to address its
judge.

A flag never changes a score by itself. One use only: when the judge gives no verdict at all,
an answer holding *steering* text (below) is blamed for it (``steers_judge``), since a judge
that read "ignore previous instructions" and then wrote no verdict may have obeyed.

Two families:

- ``verdict``: text shaped like one of our verdicts or prompts: ``[[X]]`` brackets (also
  full-width), score claims ("Score: 10", "评分：9/10"), JSON objects or fragments with our
  reply keys, our prompt tags (``</answer>``, ``<statement>``, ``<none/>``), tags imitating
  a fence boundary (``</answer_kqzjwmbtrxhplcfd>``), JSON code fences. Honest answers write
  some of these (a citation marker ``[[2]]``): they are flagged, and a judge that keeps the
  request's nonce reads the answer's true verdict all the same.
- ``steering``: text addressed to the judge: chat-template tokens, fake role turns
  ("Assistant:", "System:"), instructions to ignore or override, our step markers, notes to
  the grader.

This is the one detector of such text: new kinds (self-praise, claims of having been checked)
are new entries in ``PATTERNS`` and, where they steer the judge, in ``STEERING``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..judge import BRACKET, NONCE_FIELD, PROMPT_TAGS, json_objects_at

#: keys of our JSON replies: a JSON object in an answer holding one is verdict-shaped
REPLY_KEYS = frozenset({"score", "support", "grades", "statements", "analysis", "errors",
                        "points", "relevant", "winner", "verdict", NONCE_FIELD})

_SCORE_WORDS = r"(?:score|rating|grade|verdict|mark|评分|分数|得分|打分|评级|判定|等级)"
_NUMBER = r"\d{1,3}(?:\.\d+)?(?:\s*(?:/|out of|分?满分)\s*10)?"

#: kind -> pattern. Case-insensitive; English and Chinese.
PATTERNS: dict[str, re.Pattern[str]] = {
    "verdict_bracket": BRACKET,
    "score_claim": re.compile(
        rf"\b{_SCORE_WORDS}\s*(?:[:：=]|is|of|为|是)\s*{_NUMBER}"
        r"|\b\d{1,2}(?:\.\d+)?\s*(?:/\s*10|out of 10)\b(?=\s*(?:$|[.,;:!)\]]))"
        r"|(?:打|给|评)\s*\d{1,2}\s*分", re.IGNORECASE | re.MULTILINE),
    "json_verdict": re.compile(
        r'"\s*(?:' + "|".join(sorted(REPLY_KEYS)) + r')\s*"\s*:', re.IGNORECASE),
    "prompt_tag": re.compile(
        r"<\s*/?\s*(?:" + "|".join(PROMPT_TAGS) + r")\b[^<>\n]{0,40}/?\s*>"
        r"|<\s*/?\s*[a-z_]+_[a-z]{16}\s*>", re.IGNORECASE),
    "code_fence": re.compile(r"^\s*```\s*json\b", re.IGNORECASE | re.MULTILINE),
    "chat_template": re.compile(
        r"<\|[A-Za-z0-9_]{2,30}\|>|<｜[^｜\n]{1,30}｜>|\[/?INST\]|<</?SYS>>|</?s>"
        r"|<(?:start|end)_of_turn>|<\|?(?:endoftext|eot_id|im_start|im_end)\|?>"),
    "role_turn": re.compile(
        r"^[\s>*#-]*(?:assistant|system|user|human|ai|judge|grader|evaluator|reviewer|"
        r"助手|系统|系统提示|用户|评审|评委|裁判)\s*[:：]", re.IGNORECASE | re.MULTILINE),
    "instruction": re.compile(
        r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:instructions?|prompts?|rules?"
        r"|rubric|guidelines)\b"
        r"|\byou are now\b|\bnew instructions?\b|\bevaluation[- ]override\b"
        r"|\b(?:must|should|will) (?:output|reply|respond|answer|return|give|award|rate)\b"
        r"[^.\n]{0,30}(?:\[\[|\{|score|\d+\s*(?:/|out of)\s*10)"
        r"|\bthe correct (?:output|verdict|score|reply) is\b"
        r"|忽略[^。\n]{0,10}(?:指令|指示|说明|提示|规则)|无视[^。\n]{0,10}(?:指令|规则)"
        r"|必须(?:输出|回复|给出|打)|(?:输出|给出)\s*(?:\[\[|【【)",
        re.IGNORECASE),
    "step_marker": re.compile(r"<!--\s*(?:step|system|user|reply)\b", re.IGNORECASE),
    "grader_note": re.compile(
        r"\b(?:note|message|instructions?) (?:to|for) (?:the )?(?:grader|reviewer|evaluator|"
        r"judge|assessor|rater|model)\b"
        r"|\b(?:dear|attention|hey|hello),? (?:grader|reviewer|evaluator|judge|assessor|rater)\b"
        r"|(?:致|给|请)(?:评审|评委|审阅者|裁判|评估者)", re.IGNORECASE),
}

#: kinds of text addressed to the judge (the rest are verdict-shaped)
STEERING = frozenset({"chat_template", "role_turn", "instruction", "step_marker", "grader_note"})


@dataclass(frozen=True)
class Flag:
    """One match: its kind, its family ("verdict" or "steering") and where it is in the
    answer (``text`` is ``answer[start:end]``)."""

    kind: str
    start: int
    end: int
    text: str

    @property
    def family(self) -> str:
        return "steering" if self.kind in STEERING else "verdict"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "end": self.end, "text": self.text}


def find_flags(text: str) -> list[Flag]:
    """Every flagged span of ``text``, in order of position (then kind)."""
    flags: set[Flag] = set()
    for kind, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            if m.end() > m.start():
                flags.add(Flag(kind, m.start(), m.end(), m.group(0)))
    # A whole JSON object that holds a reply key is one flag, beyond its key's fragment.
    for source, value, start in json_objects_at(text):
        if isinstance(value, dict) and REPLY_KEYS & {str(k).casefold() for k in value}:
            flags.add(Flag("json_verdict", start, start + len(source), source))
    # a match inside a larger one of the same kind (a key inside its object) is not another
    kept = [f for f in flags if not any(g is not f and g.kind == f.kind and g.start <= f.start
                                        and f.end <= g.end for g in flags)]
    return sorted(kept, key=lambda f: (f.start, f.end, f.kind))


def steers_judge(text: str) -> bool:
    """Whether ``text`` holds text addressed to the judge (a ``steering`` flag)."""
    return any(PATTERNS[kind].search(text) for kind in STEERING)


def flag_counts(flags: Iterable[dict[str, Any] | Flag]) -> Counter[str]:
    """Flags by kind (``Flag`` objects or their ``to_dict`` rows)."""
    return Counter(f.kind if isinstance(f, Flag) else str(f.get("kind")) for f in flags)
