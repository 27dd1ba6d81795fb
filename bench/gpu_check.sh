#!/usr/bin/env bash
# Every GPU check in one call (under 8 minutes on an H100, every timeout included):
#   1. kernel correctness tests in bf16/fp16 (test/kernels, test/quant) via pytest; the
#      TRITON_INTERPRET tests are CPU checks of `make test` and are left out here;
#   2. the kernel benchmark against fp16 cuBLAS, eager and CUDA-graph replayed, every Triton
#      path and the measured choice (bench/kernel_speed.py --device cuda);
#   3. the fused online rotation + A4/A8 token rounding against the torch path
#      (bench/rotation_speed.py; at most 35 s);
#   4. a W4A8 layer: int8 tokens on int8 tensor cores vs fake-quantized bf16 tokens vs bf16
#      cuBLAS (bench/w4a8_speed.py; at most 45 s);
#   5. the Llama-2-7B-shaped forward (600 tokens, and 1 token), bf16 vs QVLA-like 4.0 bits
#      (bench/gpu_model.py), then again with CUDA-graph replays in a separate process.
# Writes gpu-tests-<dev>.json, gpu-kernels-<dev>.json, gpu-rotation-<dev>.json,
# gpu-w4a8-<dev>.json, gpu-model-<dev>.json and gpu-model-graph-<dev>.json to
# ${RESULTS_DIR:-bench/results}. Needs torch with CUDA, triton and transformers; no install.
# Knobs for a shorter run: KERNEL_SHAPES (comma list of bench/kernel_speed.py shape names, default
# all), KERNEL_BUDGET_S (default 60), TEST_TIMEOUT_S (default 130).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}
RES=${RESULTS_DIR:-bench/results}
mkdir -p "$RES"
dev=$($PY -c "import torch; n=torch.cuda.get_device_name(0).lower(); print(''.join(c if c.isalnum() else '-' for c in n))") || { echo "no CUDA device"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
status=0

start=$(date +%s)
timeout "${TEST_TIMEOUT_S:-130}" $PY -m pytest -q test/kernels/test_triton_gpu.py test/kernels \
  test/quant -k "not interpret" \
  --junitxml="$RES/gpu-tests-$dev.xml" 2>&1 | tail -n 25 || status=1
$PY - "$RES/gpu-tests-$dev.xml" "$RES/gpu-tests-$dev.json" "$dev" <<'PYEOF'
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == 'testsuite' else root.find('testsuite')
fails = [c.get('classname') + '::' + c.get('name') for c in suite.iter('testcase')
         if c.find('failure') is not None or c.find('error') is not None]
out = {k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')}
out.update(device=sys.argv[3], failed=fails, time_s=float(suite.get('time', 0)),
           command='bench/gpu_check.sh (pytest test/kernels test/quant -k "not interpret")')
json.dump(out, open(sys.argv[2], 'w'), indent=1)
print('tests:', out)
PYEOF
echo "tests took $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout $(( ${KERNEL_BUDGET_S:-60} + 50 )) $PY bench/kernel_speed.py --device cuda \
  --budget-s "${KERNEL_BUDGET_S:-60}" --shapes "${KERNEL_SHAPES:-all}" \
  --out "$RES/gpu-kernels-$dev.json" || status=1
echo "kernel bench took $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout 35 $PY bench/rotation_speed.py --out "$RES/gpu-rotation-$dev.json" || status=1
echo "rotation bench took $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout 45 $PY bench/w4a8_speed.py --out "$RES/gpu-w4a8-$dev.json" || status=1
echo "w4a8 bench took $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout 100 $PY bench/gpu_model.py --out "$RES/gpu-model-$dev.json" || status=1
echo "model bench took $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout 60 $PY bench/gpu_model.py --graph --out "$RES/gpu-model-graph-$dev.json" || status=1
echo "graphed model bench took $(( $(date +%s) - start )) s"
rm -f "$RES/gpu-tests-$dev.xml"
exit $status
