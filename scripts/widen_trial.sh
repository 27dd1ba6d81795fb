#!/usr/bin/env bash
# Meta-World goal-input trial (session 16): the third stage of scripts/reference.sh metaworld
# (GOAL=1: the second-stage model widened to read the goal's xyz, fine-tuned 3000 steps on the
# third stage's demonstrations) with one change, --widen-init matched: the goal inputs start
# with random weights at the scale of the hand inputs' instead of zero. The shipped model's goal
# columns in proprio_proj stayed far smaller than the hand's (bench/input_use.py measures it).
# Then bf16 export, evaluation on dev seeds and on evaluation seeds (result JSON in
# $BUILD/finetune2-goal-matched-eval*.json), and the input-use study of the shipped and the
# trial model on the calibration frames (bench/results/input_use_metaworld.json).
# Needs scripts/reference.sh metaworld's build folder; the second-stage bf16 model, when
# missing, is taken from commit 99accd8 (where it was shipped). Each step is skipped when its
# output exists. Usage: scripts/widen_trial.sh   (STEPS=3000 BUILD=... to change)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/reference-metaworld}
STEPS=${STEPS:-3000}
QVLA=.venv/bin/qvla
OUT=$BUILD/finetune2-goal-matched
for need in "$BUILD/demos-more-goal/dataset.json" "$BUILD/calib/dataset.json"; do
  [ -f "$need" ] || { echo "missing $need: run scripts/reference.sh metaworld first" >&2; exit 2; }
done
if [ ! -f "$BUILD/finetune-bf16/model.safetensors" ]; then
  rm -rf "$BUILD/finetune-bf16.tmp"; mkdir -p "$BUILD/finetune-bf16.tmp"
  for f in config.json model.safetensors norm_stats.json; do
    git show "99accd8:checkpoints/metaworld-small/$f" > "$BUILD/finetune-bf16.tmp/$f"
  done
  mv "$BUILD/finetune-bf16.tmp" "$BUILD/finetune-bf16"
fi
[ -f "$OUT/model.safetensors" ] || \
  $QVLA train --dataset "$BUILD/demos-more-goal" --config small --out "$OUT" \
    --init "$BUILD/finetune-bf16" --steps "$STEPS" --lr 1.5e-4 --seed 2 --proprio-dim 7 \
    --widen-init matched --batch-size 32 --val-every 500 --crop-scale 1.0 --jitter 0.1 \
    --loss mse --aux-weight 0.0
[ -f "$OUT-bf16/model.safetensors" ] || $QVLA export "$OUT" --dtype bf16 --out "$OUT-bf16"
[ -f "$OUT-eval-dev.json" ] || $QVLA eval --suite metaworld --checkpoint "$OUT-bf16" \
  --episodes 50 --seeds 90000:90050 --workers 2 --out "$OUT-eval-dev.json"
[ -f "$OUT-eval.json" ] || $QVLA eval --suite metaworld --checkpoint "$OUT-bf16" \
  --episodes 100 --seeds 100000:100100 --workers 2 --out "$OUT-eval.json"
.venv/bin/python bench/input_use.py --dataset "$BUILD/calib" --name metaworld \
  --checkpoints "checkpoints/metaworld-small,$OUT-bf16"
