#!/usr/bin/env bash
# Meta-World goal-input trial (session 16; shipped in session 17, when it became the default of
# scripts/reference.sh metaworld): the third stage of the recipe as it was (GOAL=1: the
# second-stage model widened to read the goal's xyz, fine-tuned 3000 steps on the third stage's
# demonstrations) with one change, --widen-init matched: the goal inputs start with random
# weights at the scale of the hand inputs' instead of zero. The zero-initialised model's goal
# columns in proprio_proj stayed far smaller than the hand's (bench/input_use.py measures it).
# Then bf16 export, evaluation on dev seeds and on evaluation seeds (result JSON in
# $BUILD/finetune2-goal-matched-eval*.json), and the input-use study of the zero-initialised
# and the matched model on the calibration frames (bench/results/input_use_metaworld.json).
# Needs scripts/reference.sh metaworld's build folder. Models missing from it are taken from
# the commits that shipped them: the second-stage bf16 model from 99accd8, the zero-initialised
# third-stage model from 1c839f5. Each step is skipped when its output exists.
# Usage: experiments/widen_trial.sh   (STEPS=3000 BUILD=... to change)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/reference-metaworld}
STEPS=${STEPS:-3000}
QVLA=.venv/bin/qvla
OUT=$BUILD/finetune2-goal-matched
for need in "$BUILD/demos-more-goal/dataset.json" "$BUILD/calib/dataset.json"; do
  [ -f "$need" ] || { echo "missing $need: run scripts/reference.sh metaworld first" >&2; exit 2; }
done
from_git() {  # COMMIT DEST: checkpoints/metaworld-small as shipped at COMMIT, unless DEST exists
  [ -f "$2/model.safetensors" ] && return
  rm -rf "$2.tmp"; mkdir -p "$2.tmp"
  for f in config.json model.safetensors norm_stats.json; do
    git show "$1:checkpoints/metaworld-small/$f" > "$2.tmp/$f"
  done
  mv "$2.tmp" "$2"
}
from_git 99accd8 "$BUILD/finetune-bf16"
from_git 1c839f5 "$BUILD/finetune2-goal-bf16"
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
  --checkpoints "$BUILD/finetune2-goal-bf16,$OUT-bf16"
