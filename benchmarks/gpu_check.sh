#!/usr/bin/env bash
# GPU check (issues 7 and 14): one call on a device machine, under 10 minutes, most important
# first; each step has its own time limit and a failing step does not stop the others.
#   0. set-up: the device image's python3 plus the carried wheels (.whl) and MNIST (.device_data),
#      prepared here by benchmarks/device_prepare.sh; the package is imported from the checkout
#   1. the tests that need CUDA (CUDA graphs against the plain loop, eigenvalues on the host)
#   2. CUDA smoke test: simulate (all solvers) and train on the GPU, compare with CPU float64
#   3. the method benchmark on the GPU (quick; with the linear-response solver of issue 15),
#      again with the linear-response solver on the reference discretisation (the Table-1
#      training's), and a profile of one linear-response update there (where its time goes)
#   4. CUDA graphs against the plain loop (single runs, stacked ensembles of 7 and 35)
#   5. the ensemble benchmark on the GPU (Fig. 3 and MNIST members)
#   6. the Table-1 time estimate on the GPU (MNIST rows, sequential and as ensembles)
#   7. the unit tests (they pin the CPU; on the device image's torch)
# Usage: bash benchmarks/gpu_check.sh [OUTDIR]   (default: $OUT, else benchmarks/results)
# On the device machine (OUTDIR = $OUT) only 8 files come back: the logs and JSON are written to
# a scratch folder and packed into $OUT/gpu_check_results.tar.gz after every step (so a call cut
# off at its limit still returns what was done), beside gpu_check_summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$OUTDIR"
WORK="$OUTDIR"
if [ -n "${OUT:-}" ] && [ "$(cd "$OUTDIR" && pwd)" = "$(cd "$OUT" && pwd)" ]; then WORK="$(mktemp -d)"; fi
pack() { if [ "$WORK" != "$OUTDIR" ]; then tar -czf "$OUTDIR/gpu_check_results.tar.gz" -C "$WORK" .; fi; }
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${NEURODFC_DATA:-}" ]; then
  if [ -d .device_data ]; then export NEURODFC_DATA="$PWD/.device_data"
  elif [ -d ../shared/data ]; then export NEURODFC_DATA="$(cd ../shared/data && pwd)"; fi
fi
if ! "$PY" -c "import pydantic, netCDF4, tomli_w, pooch, dask.distributed" 2>/dev/null && [ -d .whl ]; then
  # every missing dependency is in .whl (device_prepare.sh): install them as they are, offline
  "$PY" -m pip install -q --no-index --no-deps .whl/*.whl 2>&1 | tail -3
fi
SUMMARY="$OUTDIR/gpu_check_summary.txt"
: > "$SUMMARY"
BUDGET="${GPU_CHECK_SECONDS:-540}"  # the whole check stays inside one 10-minute device call
step() {  # step NAME SECONDS COMMAND...: at most SECONDS, and never past the budget
  local name="$1" limit="$2"; shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 15 ]; then echo "$name: skipped (budget spent)" | tee -a "$SUMMARY"; return; fi
  if [ "$limit" -gt "$left" ]; then limit=$left; fi
  local t0=$SECONDS
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$SUMMARY"
  tail -n 15 "$WORK/$name.log"
  pack
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.version.cuda)"
step cuda_tests 60 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider tests/unit/test_fastpath_graphs.py tests/unit/test_linalg.py
step cuda_smoke 90 "$PY" benchmarks/cuda_smoke.py --device cuda
step methods_cuda 120 "$PY" benchmarks/methods.py --device cuda --quick --out "$WORK/methods_cuda_quick.json"
step methods_cuda_scheme 90 "$PY" benchmarks/methods.py --device cuda --quick --no-error --methods bp,dfc_reference_scheme,dfc_linear_response,dfc_ss_linear_response --set simulation.discretisation=reference_euler --out "$WORK/methods_cuda_scheme.json"
step lr_profile 60 "$PY" benchmarks/profile_linear_response.py --device cuda --rows 25
step cuda_graphs 90 "$PY" benchmarks/cuda_graphs.py --device cuda --out "$WORK/cuda_graphs.json"
step ensemble_cuda 90 "$PY" benchmarks/ensemble.py --device cuda --quick --out "$WORK/ensemble_cuda.json"
step table1_estimate 60 "$PY" analyses/table1.py --estimate-only --device cuda --datasets mnist --out "$WORK/table1"
step unit_tests 100 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -n 8 tests/unit -x
echo "results in $OUTDIR"
