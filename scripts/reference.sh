#!/usr/bin/env bash
# One-command recipe for a shipped reference policy and its 4-bit QVLA checkpoint:
#   scripts/reference.sh tabletop      (or metaworld)
# Steps: expert demonstrations with DART-style action noise (labels stay clean) -> behaviour
# cloning of qvla-ref small (sincos-initialised vision positions; on tabletop also the
# auxiliary colour-localization loss of qvla_ros/models/aux_targets.py) -> bf16 export to
# checkpoints/<suite>-small -> calibration data (expert + FP-policy rollouts, separate seeds)
# -> QVLA 4-bit packed checkpoint (QVLA allocation, GPTQ rounding within each row's width).
# With MORE > 0 (both suites), a second stage adds MORE demonstrations (seeds after the first
# EPISODES) and fine-tunes the first model on all of them (qvla train --init). With MORE2 > 0
# (Meta-World only; off by default, the shipped model has two stages), a third stage adds MORE2
# demonstrations (the seeds after those) and fine-tunes the bf16 export of the second-stage
# model on them alone (the README's third-stage trial is MORE2=2000). The last stage's model
# is exported.
# Seeds: demos 0.., calibration 50000.. / 60000.., evaluation 100000.., demo 200000..
# Expert episodes are recorded in 2 processes (the same data one process writes), every dataset
# into a .tmp folder renamed when complete. Every step resumes or is skipped when its output
# exists: a shipped FP checkpoint is kept (remove checkpoints/<suite>-small to retrain it), and
# so is a 4-bit one. BUILD=... moves the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${1:?usage: scripts/reference.sh tabletop|metaworld}
case "$SUITE" in
  tabletop)  EPISODES=${EPISODES:-1000}; NOISE=${NOISE:-0.005}; STEPS=${STEPS:-4000}
             AUX=${AUX:-1.0}; MORE=${MORE:-3000}; FT_STEPS=${FT_STEPS:-3000} ;;
  metaworld) EPISODES=${EPISODES:-400};  NOISE=${NOISE:-0.1};   STEPS=${STEPS:-4000}
             AUX=${AUX:-0.0}; MORE=${MORE:-800}; FT_STEPS=${FT_STEPS:-2500}
             MORE2=${MORE2:-0}; FT2_STEPS=${FT2_STEPS:-3000} ;;
  *) echo "unknown suite $SUITE; expected tabletop or metaworld" >&2; exit 2 ;;
esac
BUILD=${BUILD:-build/reference-$SUITE}
QVLA=.venv/bin/qvla
FP=checkpoints/$SUITE-small
Q4=checkpoints/$SUITE-small-qvla-w4
mkdir -p "$BUILD" checkpoints
# The FP policy: demonstrations, training, fine-tuning and export, skipped when it exists.
train_fp() {
  [ -f "$BUILD/demos/dataset.json" ] || {
    rm -rf "$BUILD/demos.tmp"
    $QVLA sim collect --suite "$SUITE" --episodes "$EPISODES" --seed 0 --action-noise "$NOISE" \
      --successes-only --workers 2 --out "$BUILD/demos.tmp"
    mv "$BUILD/demos.tmp" "$BUILD/demos"; }
  [ -f "$BUILD/train/model.safetensors" ] || $QVLA train --dataset "$BUILD/demos" --config small \
    --out "$BUILD/train" --steps "$STEPS" --batch-size 32 --lr 3e-4 --seed 0 --val-every 500 \
    --crop-scale 1.0 --jitter 0.1 --loss mse --pos-init sincos --aux-weight "$AUX"
  TRAINED=$BUILD/train
  if [ "$MORE" -gt 0 ]; then
    [ -f "$BUILD/demos-all/dataset.json" ] || {
      rm -rf "$BUILD/demos-all.tmp"; cp -rL "$BUILD/demos" "$BUILD/demos-all.tmp"
      $QVLA sim collect --suite "$SUITE" --episodes "$MORE" --seed "$EPISODES" \
        --action-noise "$NOISE" --successes-only --workers 2 --out "$BUILD/demos-all.tmp"
      mv "$BUILD/demos-all.tmp" "$BUILD/demos-all"; }
    [ -f "$BUILD/finetune/model.safetensors" ] || $QVLA train --dataset "$BUILD/demos-all" \
      --init "$BUILD/train" --config small --out "$BUILD/finetune" --steps "$FT_STEPS" \
      --batch-size 32 --lr 1.5e-4 --seed 1 --val-every 500 --crop-scale 1.0 --jitter 0.1 \
      --loss mse --aux-weight "$AUX"
    TRAINED=$BUILD/finetune
  fi
  if [ "${MORE2:-0}" -gt 0 ]; then
    # Third stage: MORE2 demonstrations on the next seeds; the second-stage model, exported in
    # bf16 as it was first shipped, is fine-tuned on them alone.
    [ -f "$BUILD/finetune-bf16/model.safetensors" ] || \
      $QVLA export "$TRAINED" --dtype bf16 --out "$BUILD/finetune-bf16"
    [ -f "$BUILD/demos-more/dataset.json" ] || {
      rm -rf "$BUILD/demos-more.tmp"
      $QVLA sim collect --suite "$SUITE" --episodes "$MORE2" --seed $((EPISODES + MORE)) \
        --action-noise "$NOISE" --successes-only --workers 2 --out "$BUILD/demos-more.tmp"
      mv "$BUILD/demos-more.tmp" "$BUILD/demos-more"; }
    [ -f "$BUILD/finetune2/model.safetensors" ] || $QVLA train --dataset "$BUILD/demos-more" \
      --init "$BUILD/finetune-bf16" --config small --out "$BUILD/finetune2" \
      --steps "$FT2_STEPS" --batch-size 32 --lr 1.5e-4 --seed 2 --val-every 500 \
      --crop-scale 1.0 --jitter 0.1 --loss mse --aux-weight "$AUX"
    TRAINED=$BUILD/finetune2
  fi
  $QVLA export "$TRAINED" --dtype bf16 --out "$FP"
}
if [ ! -f "$FP/model.safetensors" ]; then train_fp; fi
[ -f "$BUILD/calib/dataset.json" ] || {
  rm -rf "$BUILD/calib.tmp"
  $QVLA sim collect --suite "$SUITE" --episodes 20 --seed 50000 --workers 2 \
    --out "$BUILD/calib.tmp"
  $QVLA sim collect --suite "$SUITE" --episodes 20 --seed 60000 --policy "$FP" \
    --out "$BUILD/calib.tmp"
  mv "$BUILD/calib.tmp" "$BUILD/calib"; }
[ -f "$Q4/model.safetensors" ] || $QVLA quantize --model "$FP" --method qvla-gptq --bits 4 \
  --dataset "$BUILD/calib" --max-samples 16 --stride 3 --refine-fraction 0.01 --out "$Q4"
echo "reference $SUITE: $FP and $Q4"
