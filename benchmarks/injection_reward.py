"""How many injected answers outrank their clean control, per reply style of an honest judge.

Issue 14's measurement, as a command: the 100 injected answers of the adversarial suite
(``tests/injection_world.py``: forged high verdicts, instructions, fake tags and fences, low
verdicts the answer expects to get, the whole scale, guessed verdict codes; English and
Chinese) are scored through the real scorer, client and HTTP path against the judge double
playing an honest judge in eight reply styles (JSON: bare, fenced, prose_json, json_quotes;
text: last, first, label, fullwidth), for three judges that give different scores per
dimension, and with the judge keeping the request's verdict code always, never, or for about
half of its verdicts. Each injected answer's reward is compared with its clean control's.

    python benchmarks/injection_reward.py                 # the full table (~5 min on 2 cores)
    python benchmarks/injection_reward.py --styles bare,last --codes never
    PYTHONPATH=/path/to/older/src python benchmarks/injection_reward.py --codes never

The last line measures an older longreward ("before"): the suite uses only the public scoring
API, and an older scorer's prompts carry no verdict code, so its judge keeps none. The baseline
of each count is the clean control scored in the same run by the same judge: "higher" must be 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from injection_world import (  # noqa: E402
    ALL_INJECTIONS,
    PROFILES,
    STYLES,
    HonestJudge,
    outranked,
    score_all,
)
from judge_double import JudgeDouble  # noqa: E402

CODES = {"always": True, "never": False, "sometimes": "sometimes"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", default=",".join(STYLES))
    parser.add_argument("--codes", default="always,never,sometimes",
                        help="how often the judge keeps the verdict code: always, never, "
                             "sometimes (comma-separated)")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args()
    styles = args.styles.split(",")
    codes = args.codes.split(",")
    import longreward

    print(f"longreward from {Path(longreward.__file__).parent}; {len(ALL_INJECTIONS)} injected "
          f"answers x {len(PROFILES)} judges per cell", flush=True)
    table: dict[str, dict[str, dict[str, int]]] = {}
    t0 = time.perf_counter()
    with JudgeDouble() as double:
        for style in styles:
            for code in codes:
                total = {"higher": 0, "equal": 0, "lower": 0, "no reward": 0}
                for profile in PROFILES:
                    double.reset()
                    judge = HonestJudge(style, profile, keep_nonce=CODES[code])
                    counts = outranked(score_all(double, judge, ALL_INJECTIONS), ALL_INJECTIONS)
                    for k, v in counts.items():
                        total[k] += v
                table.setdefault(style, {})[code] = total
                print(f"  {style:11s} code {code:9s} {total}", flush=True)
    seconds = time.perf_counter() - t0
    n = len(ALL_INJECTIONS) * len(PROFILES)
    print(f"\nInjected answers whose reward is above / equal to / below their clean control's "
          f"(of {n} per cell; 'none': no reward), {seconds:.0f} s\n")
    print("| reply style | " + " | ".join(f"code {c}: above / equal / below / none"
                                         for c in codes) + " |")
    print("|---|" + "---|" * len(codes))
    for style, row in table.items():
        cells = [f"**{r['higher']}** / {r['equal']} / {r['lower']} / {r['no reward']}"
                 for r in (row[c] for c in codes)]
        print(f"| {style} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"per_cell": n, "seconds": seconds, "table": table},
                                        indent=2))


if __name__ == "__main__":
    main()
