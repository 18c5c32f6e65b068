"""The detector of text addressed to the grader (``reward.injection``, issue 21 item 5): its
false-flag rate on honest answers and its catch rate on held-out attacks. No judge call; a
second or two.

Honest answers: the bundled examples (``src/longreward/examples``), the held-out honest
sentences of ``tests/addressed_text.py``, and, when present, the 10 sampled answers of
THUDM/LongReward's example and the 40 LongEval PubMed summaries (``../shared/data``).
Attacks: ``tests/addressed_text.py``'s held-out set (English and Chinese), each added to a
correct answer at its end and (but fake turn ends) at its start.

A false flag counts any flag of the kinds issue 21 added (``self_assessment``,
``grader_address``, ``fake_turn``); the verdict-shaped kinds of #14 are reported apart (an
honest answer may write a citation ``[[2]]``). An attack is caught when the detector gives it
the kind it was written as; "flagged" counts any flag at all (any flag sends the answer through
the with-and-without rule).

    python benchmarks/addressed_text_flags.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from addressed_text import ATTACKS, HONEST  # noqa: E402
from longreward.reward.injection import find_flags  # noqa: E402

ADDRESSED = {"self_assessment", "grader_address", "fake_turn"}
ANSWER = {"en": "The reservoir was completed in 1958. It holds 41 million cubic metres.",
          "zh": "水库于1958年建成。库容为4100万立方米。"}


def honest_sets(shared: Path) -> dict[str, list[str]]:
    bundled = []
    for name in ("candidates.jsonl", "flat.jsonl"):
        for line in (ROOT / "src/longreward/examples" / name).read_text("utf-8").splitlines():
            row = json.loads(line)
            bundled += [c["response"] for c in row.get("candidates", [row]) if c.get("response")]
    sets = {"bundled examples": bundled, "held-out honest (tests/addressed_text.py)": HONEST}
    sampled = shared / "longreward_example" / "sampled_responses.jsonl"
    if sampled.exists():
        sets["LongReward sampled answers"] = [json.loads(x)["answer"] for x in
                                              sampled.read_text("utf-8").splitlines()]
    longeval = shared / "longeval_pubmed" / "faithfulness_human.jsonl"
    if longeval.exists():
        seen: dict[str, None] = {}
        for x in longeval.read_text("utf-8").splitlines():
            row = json.loads(x)
            seen.setdefault(row.get("summary") or row.get("response") or "", None)
        sets["LongEval PubMed summaries"] = [s for s in seen if s]
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = next((p for p in (ROOT.parent / "shared" / "data",
                                ROOT.parent.parent / "shared" / "data") if p.exists()),
                   ROOT.parent / "shared" / "data")
    ap.add_argument("--shared", type=Path, default=default)
    args = ap.parse_args()
    print("false flags (kinds of issue 21 / any kind):")
    total = [0, 0, 0]
    for name, texts in honest_sets(args.shared).items():
        new = sum(any(f.kind in ADDRESSED for f in find_flags(t)) for t in texts)
        anyk = sum(bool(find_flags(t)) for t in texts)
        total = [total[0] + new, total[1] + anyk, total[2] + len(texts)]
        print(f"  {name}: {new}/{len(texts)} / {anyk}/{len(texts)}")
        for t in texts:
            for f in find_flags(t):
                if f.kind in ADDRESSED:
                    print(f"      {f.kind}: {f.text[:100]!r}")
    print(f"  all: {total[0]}/{total[2]} / {total[1]}/{total[2]}")
    caught = flagged = n = 0
    for kind, text in ATTACKS:
        lang = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
        for where in (("end",) if kind == "fake_turn" else ("end", "start")):
            sep = "\n" if text.startswith(("\n", "<", "[", "【")) else " "
            attacked = (ANSWER[lang] + sep + text if where == "end"
                        else text.strip() + "\n" + ANSWER[lang])
            kinds = {f.kind for f in find_flags(attacked)}
            n += 1
            caught += kind in kinds
            flagged += bool(kinds)
            if kind not in kinds:
                print(f"  missed ({kind}, {where}): {text!r} -> {sorted(kinds)}")
    print(f"held-out attacks: caught as their kind {caught}/{n} ({100 * caught / n:.1f}%), "
          f"flagged {flagged}/{n} ({100 * flagged / n:.1f}%)")
    suite_variants()


def suite_variants() -> None:
    """``eval robustness``'s own variants of the bundled answers (seed 0, 3 per class): what
    the with-and-without rule removes. Not held out: the detector was extended after it first
    met these strings (docs/robustness.md says how it did then)."""
    from longreward.eval.robustness import RobustnessOptions, plan_variants, read_answers
    from longreward.reward.injection import strip_flagged
    from longreward.text.canonical import canonical_answer

    records, rejected = read_answers(ROOT / "src/longreward/examples/candidates.jsonl")
    classes = ["forgery", "self_praise", "grader_note", "fake_turn", "padding"]
    plan = plan_variants(records, RobustnessOptions(classes=classes, variants_per_class=3),
                         rejected)
    original = {c.id: c.response for r in plan.records for c in r.candidates}
    print("eval robustness variants of the bundled answers (seed 0): flagged / stripped back "
          "to the original's canonical layout")
    for name in classes:
        mine = [v for v in plan.variants if v.attack_class == name]
        flagged = sum(bool(find_flags(v.text)) for v in mine)
        back = sum(canonical_answer(strip_flagged(v.text)) == canonical_answer(original[v.of])
                   for v in mine)
        print(f"  {name}: {flagged}/{len(mine)} / {back}/{len(mine)}")


if __name__ == "__main__":
    main()
