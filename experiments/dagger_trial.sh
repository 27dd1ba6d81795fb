#!/usr/bin/env bash
# Meta-World DAgger trial (session 15; not shipped: 46/100 against the shipped model's 53/100).
# The shipped FP policy drives 400 episodes on seeds 3200-3599 while the scripted expert labels
# every state it visits; those episodes, then the third stage's demonstrations, are fine-tuned
# from the shipped model (DAgger episodes first: validation is the last 10 % of episodes, here
# demonstrations only), exported in bf16 and evaluated on dev seeds, then evaluation seeds.
# Needs scripts/reference.sh metaworld's build folder. Each step is skipped when its output
# exists. Usage: experiments/dagger_trial.sh   (STEPS=1500 EPISODES=400 BUILD=... to change)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/reference-metaworld}
STEPS=${STEPS:-1500}; EPISODES=${EPISODES:-400}
QVLA=.venv/bin/qvla
for need in "$BUILD/demos-more-goal/dataset.json" "$BUILD/finetune2-goal-bf16/model.safetensors"; do
  [ -f "$need" ] || { echo "missing $need: run scripts/reference.sh metaworld first" >&2; exit 2; }
done
if [ ! -f "$BUILD/dagger1/dataset.json" ]; then
  rm -rf "$BUILD/dagger1.tmp"
  $QVLA sim collect --suite metaworld --episodes "$EPISODES" --seed 3200 \
    --policy checkpoints/metaworld-small --expert-labels --workers 2 --out "$BUILD/dagger1.tmp"
  mv "$BUILD/dagger1.tmp" "$BUILD/dagger1"
fi
[ -f "$BUILD/agg1/dataset.json" ] || \
  $QVLA sim merge "$BUILD/dagger1" "$BUILD/demos-more-goal" --out "$BUILD/agg1"
[ -f "$BUILD/finetune3-dagger/model.safetensors" ] || \
  $QVLA train --dataset "$BUILD/agg1" --config small --out "$BUILD/finetune3-dagger" \
    --init "$BUILD/finetune2-goal-bf16" --steps "$STEPS" --lr 1.5e-4 --seed 3 --batch-size 32 \
    --val-every 500 --crop-scale 1.0 --jitter 0.1 --loss mse --proprio-dim 7
[ -f "$BUILD/finetune3-dagger-bf16/model.safetensors" ] || \
  $QVLA export "$BUILD/finetune3-dagger" --dtype bf16 --out "$BUILD/finetune3-dagger-bf16"
$QVLA eval --suite metaworld --checkpoint "$BUILD/finetune3-dagger-bf16" --episodes 50 \
  --seeds 90000:90050 --workers 2
$QVLA eval --suite metaworld --checkpoint "$BUILD/finetune3-dagger-bf16" --episodes 100 \
  --seeds 100000:100100 --workers 2
