"""What issue 21's content-grounding rules change, measured offline (no model, no GPU).

1. **Grounding on honest splits.** The paper's split is sentence-level, so every sentence of
   an answer is a statement a faithful split could return. Each sentence of every bundled
   answer (``src/longreward/examples/candidates.jsonl``) and of the 10 sampled answers of
   ``../shared/data/longreward_example`` is checked with ``text.grounding.ground_statement``
   against its own answer and question: the share kept is the rule's recall on honest
   statements (a split that rewrites a pronoun into a subject the answer never names can
   still lose one: see docs/reward_rules.md).
2. **Clean answers and the attack classes, with the judge double.** The persuadable judges
   of ``tests/persuadable_judges.py`` (Honest, StatementInventing, EmptyRating) score the
   reservoir worlds' good and flawed answers, and ``eval robustness`` runs the master-key,
   padding and truncation classes on them, under the paper's rules (no grounding, 10·Σa/n,
   holistic coverage, no floor) and under the defaults.

    python benchmarks/grounding_rules.py            # ~2 min on 2 busy cores
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from longreward import ScoreOptions  # noqa: E402
from longreward.eval.robustness import RobustnessOptions, evaluate_robustness  # noqa: E402
from longreward.stages.score import score_file  # noqa: E402
from longreward.text import detect_language, split_sentences  # noqa: E402
from longreward.text.grounding import ground_statement  # noqa: E402
from persuadable_judges import EmptyRating, Honest, StatementInventing, world_rows  # noqa: E402

from judge_double import JudgeDouble  # noqa: E402

PAPER = {"statement_grounding": "off", "faithfulness_rule": "mean",
         "completeness_mode": "holistic", "non_answer_floor": False}
SAMPLED = ROOT.parent / "shared" / "data" / "longreward_example" / "sampled_responses.jsonl"


def honest_split_recall() -> None:
    answers: list[tuple[str, str, str]] = []
    for line in (ROOT / "src/longreward/examples/candidates.jsonl").read_text().splitlines():
        rec = json.loads(line)
        answers += [(f"{rec['id']}/{c['id']}", rec["query"], c["response"])
                    for c in rec["candidates"]]
    if SAMPLED.exists():
        for line in SAMPLED.read_text().splitlines():
            rec = json.loads(line)
            answers.append((f"longreward_example/{rec['idx']}", rec["query"], rec["answer"]))
    total = kept = 0
    dropped: list[str] = []
    for name, query, answer in answers:
        for s in split_sentences(answer, detect_language(answer)):
            if len(s) < 8:
                continue
            total += 1
            g = ground_statement(s, answer, query)
            kept += g.grounded
            if not g.grounded:
                dropped.append(f"  {name}: {s[:90]!r} ({g.why})")
    print(f"honest sentence-level statements kept: {kept} of {total} "
          f"({100 * kept / max(total, 1):.1f}%) over {len(answers)} answers")
    print("\n".join(dropped[:10]))


def options(double: JudgeDouble, rules: dict) -> ScoreOptions:
    return ScoreOptions(judge={"model": "judge-double", "base_urls": [double.base_url],
                               "max_retries": 0, "attempts": 2}, **rules)


def clean_and_attacks(double: JudgeDouble, tmp: Path) -> None:
    answers = tmp / "answers.jsonl"
    answers.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in world_rows()),
                       encoding="utf-8")
    print("\njudge | rules | clean rewards (en good, en flawed, zh good, zh flawed) | "
          "class: win rate, mean positive gain, max reward of a master key | calls")
    for judge in (Honest, StatementInventing, EmptyRating):
        for label, rules in (("paper", PAPER), ("defaults", {})):
            double.responder = judge()
            out = tmp / f"{judge.__name__}-{label}.jsonl"
            asyncio.run(score_file(answers, out, options(double, rules)))
            rows = {json.loads(x)["id"]: json.loads(x)["reward"]
                    for x in out.read_text().splitlines()}
            clean = ", ".join(f"{rows[k]:.2f}" for k in ("en-good", "en-flawed", "zh-good",
                                                          "zh-flawed"))
            robust = RobustnessOptions(classes=["master_key", "padding", "truncation"],
                                       variants_per_class=3, bootstrap=200)
            result = asyncio.run(evaluate_robustness(answers, tmp / f"{judge.__name__}-{label}"
                                                     ".json", options(double, rules), robust))
            parts = []
            for c in result.classes:
                gain = "–" if c.mean_positive_gain is None else f"{c.mean_positive_gain:.2f}"
                extra = ""
                if c.name == "master_key":
                    keys = [v.reward for v in result.variant_details
                            if v.attack_class == "master_key" and v.reward is not None]
                    extra = f", max {max(keys):.2f}"
                parts.append(f"{c.name}: {100 * c.win_rate:.0f}%, {gain}{extra}")
            calls = sum(c.cost.requests for c in result.classes)
            print(f"{judge.__name__} | {label} | {clean} | {'; '.join(parts)} | {calls}",
                  flush=True)


def bundled_dry_run(tmp: Path) -> None:
    """The bundled candidates scored with the dry-run judge (placeholder verdicts drawn from
    a hash of each request, not judgments) under both rule sets: how many rewards move and
    whether ``pairs`` picks other answers. Only the mechanics mean anything here."""
    from longreward.preference.pairs import candidate_from_row, select_pair

    src = ROOT / "src/longreward/examples/candidates.jsonl"
    picks: dict[str, dict[str, tuple[str | None, str | None]]] = {}
    rewards: dict[str, dict[str, float | None]] = {}
    for label, rules in (("paper", PAPER), ("defaults", {})):
        out = tmp / f"bundled-{label}.jsonl"
        options = ScoreOptions(judge={"provider": "dry_run", "model": "dry-run"}, **rules)
        asyncio.run(score_file(src, out, options))
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        rewards[label] = {r["id"]: r["reward"] for r in rows}
        by_prompt: dict[str, list] = {}
        for r in rows:
            by_prompt.setdefault(r["prompt_id"], []).append(candidate_from_row(r, r["id"]))
        picks[label] = {}
        for pid, cands in by_prompt.items():
            sel = select_pair(pid, cands, min_candidates=2)
            picks[label][pid] = (sel.chosen.id if sel.chosen else None,
                                 sel.rejected.id if sel.rejected else None)
    moved = [k for k in rewards["paper"] if rewards["paper"][k] != rewards["defaults"][k]]
    same = sum(picks["paper"][p] == picks["defaults"][p] for p in picks["paper"])
    print(f"\nbundled candidates, dry-run judge: {len(moved)} of {len(rewards['paper'])} "
          f"rewards move; pairs' (chosen, rejected) unchanged for {same} of "
          f"{len(picks['paper'])} prompts")
    for p in picks["paper"]:
        print(f"  {p}: paper {picks['paper'][p]} -> defaults {picks['defaults'][p]}")


def main() -> None:
    t0 = time.perf_counter()
    honest_split_recall()
    with JudgeDouble() as double, tempfile.TemporaryDirectory() as tmp:
        clean_and_attacks(double, Path(tmp))
        bundled_dry_run(Path(tmp))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
