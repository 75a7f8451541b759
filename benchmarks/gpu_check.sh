#!/usr/bin/env bash
# GPU check for issues 7 and 14 (run by the lead on a CUDA machine; not part of CI).
#   1. the unit tests (CPU: they pin their own devices),
#   2. the CUDA smoke test: simulate and train on the GPU, compare with CPU float64,
#   3. the method benchmark on the GPU (float64, then float32), and on the CPU for reference,
#   4. the ensemble tests and the ensemble benchmark on the GPU (issue 14),
#   5. CUDA graphs against the plain loop (issue 14; tests/unit/test_fastpath_graphs.py ran in 1).
# Usage: bash benchmarks/gpu_check.sh [OUTDIR]   (default: benchmarks/results)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
if [ -z "${NEURODFC_DATA:-}" ] && [ -d ../shared/data ]; then export NEURODFC_DATA="$(cd ../shared/data && pwd)"; fi
nvidia-smi || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.version.cuda)"
"$PY" -m pytest tests/unit -q -o addopts="" 2>&1 | tee "$OUT/unit_tests.log"
"$PY" benchmarks/cuda_smoke.py --device cuda 2>&1 | tee "$OUT/cuda_smoke.log"
"$PY" benchmarks/methods.py --device cuda --out "$OUT/methods_cuda_float64.json" 2>&1 | tee "$OUT/methods_cuda_float64.log"
"$PY" benchmarks/methods.py --device cuda --dtype float32 --no-error --out "$OUT/methods_cuda_float32.json" 2>&1 | tee "$OUT/methods_cuda_float32.log"
"$PY" benchmarks/methods.py --quick --out "$OUT/methods_cpu_quick.json" 2>&1 | tee "$OUT/methods_cpu_quick.log"
"$PY" -m pytest tests/integration/test_ensemble.py -q -o addopts="" 2>&1 | tee "$OUT/ensemble_tests.log"
"$PY" benchmarks/ensemble.py --device cuda --out "$OUT/ensemble_cuda.json" 2>&1 | tee "$OUT/ensemble_cuda.log"
"$PY" benchmarks/cuda_graphs.py --device cuda --out "$OUT/cuda_graphs.json" 2>&1 | tee "$OUT/cuda_graphs.log"
echo "results in $OUT"
