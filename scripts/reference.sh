#!/usr/bin/env bash
# Rebuild a shipped reference policy and its 4-bit QVLA checkpoint (docs/reference-policies.md):
#   scripts/reference.sh tabletop      (or metaworld)
# Stages: expert demonstrations with DART-style action noise (labels stay clean) -> behaviour
# cloning of qvla-ref small from scratch (qvla train --recipe SUITE) -> MORE more
# demonstrations and a warm-started fine-tune on all of them (--recipe SUITE-finetune) ->
# Meta-World only: MORE2 demonstrations on the next seeds and a fine-tune of the bf16 export on
# them alone, with the goal's xyz as extra proprio inputs (GOAL=1, WIDEN=matched|zero) -> the
# single-camera model exported in bf16 to $BUILD/single-bf16 -> the camera stage (CAMERAS,
# default agentview,wrist; CAMERAS= skips it) adds the wrist camera and fine-tunes CAM_STEPS
# steps on the previous stage's data -> bf16 export to $FP -> calibration data (expert and FP
# rollouts, separate seeds) -> QVLA 4-bit packed checkpoint (qvla-gptq) in $Q4.
# SINGLE=FOLDER takes the single-camera model from FOLDER instead of training it. BUILD=...
# moves the work folder. Seeds: demos 0.., calibration 50000.. / 60000.., evaluation 100000..,
# demo 200000.. Every step resumes or is skipped when its output exists (a shipped FP
# checkpoint is kept: remove checkpoints/<suite>-small to retrain it); every dataset is
# recorded into a .tmp folder renamed when complete.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${1:?usage: scripts/reference.sh tabletop|metaworld}
case "$SUITE" in
  tabletop)  EPISODES=${EPISODES:-1000}; NOISE=${NOISE:-0.005}; STEPS=${STEPS:-4000}
             MORE=${MORE:-3000}; FT_STEPS=${FT_STEPS:-3000}
             if [ "${MORE2:-0}" != 0 ] || [ -n "${GOAL:-}" ] || [ -n "${WIDEN:-}" ]; then
               echo "MORE2, GOAL and WIDEN are Meta-World only; unset them for tabletop" >&2
               exit 2
             fi ;;
  metaworld) EPISODES=${EPISODES:-400};  NOISE=${NOISE:-0.1};   STEPS=${STEPS:-4000}
             MORE=${MORE:-800}; FT_STEPS=${FT_STEPS:-2500}
             MORE2=${MORE2:-2000}; FT2_STEPS=${FT2_STEPS:-3000}; GOAL=${GOAL:-1}
             WIDEN=${WIDEN:-matched}
             case "$WIDEN" in zero|matched) ;; *)
               echo "unknown WIDEN $WIDEN; expected zero or matched" >&2; exit 2 ;; esac ;;
  *) echo "unknown suite $SUITE; expected tabletop or metaworld" >&2; exit 2 ;;
esac
CAMERAS=${CAMERAS-agentview,wrist}; CAM_STEPS=${CAM_STEPS:-3000}
BUILD=${BUILD:-build/reference-$SUITE}
QVLA=.venv/bin/qvla
FP=${FP:-checkpoints/$SUITE-small}
Q4=${Q4:-checkpoints/$SUITE-small-qvla-w4}
mkdir -p "$BUILD" checkpoints
# Expert demonstrations with action noise, recorded into $1.tmp (first a copy of the folder $2
# unless it is empty) and renamed to $1 when complete; skipped when $1 exists. A $1.tmp left by
# a killed run is kept: sim collect skips the seeds it already holds.
demos() {
  local dir=$1 base=$2 episodes=$3 seed=$4
  [ ! -f "$dir/dataset.json" ] || return 0
  if [ -n "$base" ] && [ ! -d "$dir.tmp" ]; then
    rm -rf "$dir.tmp.copy"; cp -rL "$base" "$dir.tmp.copy" && mv "$dir.tmp.copy" "$dir.tmp"
  fi
  $QVLA sim collect --suite "$SUITE" --episodes "$episodes" --seed "$seed" \
    --action-noise "$NOISE" --successes-only --workers 2 --out "$dir.tmp"
  mv "$dir.tmp" "$dir"
}
# Behaviour cloning of qvla-ref small into $1 on the dataset $2 with the stage's recipe and
# flags ("$@"); skipped when $1 holds a trained model.
clone() {
  local out=$1 data=$2; shift 2
  [ ! -f "$out/model.safetensors" ] || return 0
  $QVLA train --dataset "$data" --config small --out "$out" "$@"
}
# The single-camera policy: demonstrations, training and fine-tuning, exported in bf16 to
# $BUILD/single-bf16 (skipped when it exists).
train_single() {
  demos "$BUILD/demos" "" "$EPISODES" 0
  clone "$BUILD/train" "$BUILD/demos" --recipe "$SUITE" --steps "$STEPS" --seed 0
  TRAINED=$BUILD/train
  if [ "$MORE" -gt 0 ]; then
    demos "$BUILD/demos-all" "$BUILD/demos" "$MORE" "$EPISODES"
    clone "$BUILD/finetune" "$BUILD/demos-all" --recipe "$SUITE-finetune" --init "$TRAINED" \
      --steps "$FT_STEPS" --seed 1
    TRAINED=$BUILD/finetune
  fi
  if [ "${MORE2:-0}" -gt 0 ]; then
    # Third stage: MORE2 demonstrations on the next seeds; the second-stage model, exported in
    # bf16, is fine-tuned on them alone (GOAL=1: widened to read the
    # goal too; its new inputs start at the hand inputs' scale or, with WIDEN=zero, at zero).
    local tag="" wide="" model=""
    if [ "$GOAL" = 1 ]; then
      tag=-goal; wide="--proprio-dim 7 --widen-init $WIDEN"
      if [ "$WIDEN" = matched ]; then model=-matched; fi
    fi
    [ -f "$BUILD/finetune-bf16/model.safetensors" ] || \
      $QVLA export "$TRAINED" --dtype bf16 --out "$BUILD/finetune-bf16"
    demos "$BUILD/demos-more$tag" "" "$MORE2" $((EPISODES + MORE))
    # shellcheck disable=SC2086  # $wide is empty or two words
    clone "$BUILD/finetune2$tag$model" "$BUILD/demos-more$tag" --recipe "$SUITE-finetune" \
      --init "$BUILD/finetune-bf16" --steps "$FT2_STEPS" --seed 2 $wide
    TRAINED=$BUILD/finetune2$tag$model
  fi
  $QVLA export "$TRAINED" --dtype bf16 --out "$BUILD/single-bf16"
}
# The FP policy: the single-camera model, then (CAMERAS) the camera stage, exported to $FP.
train_fp() {
  if [ -n "${SINGLE:-}" ] && [ ! -f "$BUILD/single-bf16/model.safetensors" ]; then
    cp -rL "$SINGLE" "$BUILD/single-bf16"
  fi
  [ -f "$BUILD/single-bf16/model.safetensors" ] || train_single
  TRAINED=$BUILD/single-bf16
  if [ -n "$CAMERAS" ]; then
    local data
    if [ "$SUITE" = tabletop ]; then
      demos "$BUILD/demos" "" "$EPISODES" 0
      demos "$BUILD/demos-all" "$BUILD/demos" "$MORE" "$EPISODES"
      data=$BUILD/demos-all
    else
      data=$BUILD/demos-more$([ "$GOAL" = 1 ] && echo -goal)
      demos "$data" "" "$MORE2" $((EPISODES + MORE))
    fi
    clone "$BUILD/cameras" "$data" --recipe "$SUITE-finetune" --init "$BUILD/single-bf16" \
      --cameras "$CAMERAS" --steps "$CAM_STEPS" --seed 5
    TRAINED=$BUILD/cameras
  fi
  $QVLA export "$TRAINED" --dtype bf16 --out "$FP" --overwrite
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
