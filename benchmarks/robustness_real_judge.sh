#!/usr/bin/env bash
# Issue 21's benchmark: `longreward eval robustness` with the real 1.5B judge (issue 17:
# Qwen2.5-Coder-1.5B-Instruct Q4_K_M behind llama.cpp's server, `benchmarks/real_judge.py
# serve`), on three answers of the bundled harbour prompt (a: correct, c, d: a wrong sum and
# false claims), 2 variants of each in every attack class, seed 0 — before and after the
# defences.
#
#   python benchmarks/real_judge.py serve --gguf qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
#       --threads 2 --n-ctx 12288 --port 8011 &
#   BEFORE_SRC=/path/to/checkout-of-6d28db7/src bash benchmarks/robustness_real_judge.sh out/rob
#
# BEFORE_SRC (optional): the src/ folder of a checkout of the code before the defences
# (6d28db7); the variants are scored with it, then read by today's `eval robustness
# --scored`. Without it only the "after" column is measured. JUDGE_ARGS replaces the judge
# flags (e.g. JUDGE_ARGS=--dry-run for a smoke run of this script, no model needed).
# Each judge call takes 20-45 s on 2 idle cores, so the whole run is hours; it resumes
# where it stopped (every call is kept in the run directories).
set -euo pipefail
OUT=${1:-out/robustness_real}
PORT=${PORT:-8011}
JUDGE_ARGS=${JUDGE_ARGS:---base-url http://127.0.0.1:$PORT/v1 --model qwen2.5-coder-1.5b-instruct --timeout 3600 --concurrency 1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUITE=(--variants-per-class 2 --seed 0)
mkdir -p "$OUT"

python - "$ROOT/src/longreward/examples/candidates.jsonl" "$OUT/harbour3.jsonl" <<'EOF'
import json, sys
src, dst = sys.argv[1:3]
for line in open(src, encoding="utf-8"):
    row = json.loads(line)
    if row["id"] == "harbor-report":
        row["candidates"] = [c for c in row["candidates"]
                             if c["id"] in ("harbor-report-a", "harbor-report-c", "harbor-report-d")]
        open(dst, "w", encoding="utf-8").write(json.dumps(row, ensure_ascii=False) + "\n")
EOF

start=$(date +%s)
if [ -n "${BEFORE_SRC:-}" ]; then
    longreward eval robustness "$OUT/harbour3.jsonl" -o "$OUT/variants.json" "${SUITE[@]}" \
        --write-variants "$OUT/variants.jsonl" --no-score --no-progress
    # shellcheck disable=SC2086
    PYTHONPATH="$BEFORE_SRC" python -m longreward score "$OUT/variants.jsonl" \
        -o "$OUT/before.scored.jsonl" $JUDGE_ARGS --no-progress || true  # unscored rows say why
    longreward eval robustness "$OUT/harbour3.jsonl" --scored "$OUT/before.scored.jsonl" \
        -o "$OUT/before.json" "${SUITE[@]}" --no-progress || true     # exit 3: a class failed
    echo "before: $(( $(date +%s) - start )) s"
fi
start=$(date +%s)
# shellcheck disable=SC2086
longreward eval robustness "$OUT/harbour3.jsonl" -o "$OUT/after.json" "${SUITE[@]}" \
    $JUDGE_ARGS --no-progress || true
echo "after: $(( $(date +%s) - start )) s; results: $OUT/before.json $OUT/after.json"
