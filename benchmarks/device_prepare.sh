#!/usr/bin/env bash
# Prepare what the GPU check needs on a bare device machine (run here, before the device call):
#   .whl/          wheels of the dependencies the device image lacks (Python 3.12, x86-64):
#                  pydantic, netCDF4, tomli-w, pooch, dask[distributed] and their missing deps
#                  (installed there with --no-deps: this list is complete for the image of 2026-11)
#   .device_data/  the MNIST files (the ../shared beside the checkout does not travel)
# Both folders are git-ignored; the device call carries them:
#   run(command='bash benchmarks/gpu_check.sh "$OUT"', carry=[".whl", ".device_data"], timeout_s=590)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -f .whl/pydantic_core-*.whl ] 2>/dev/null || [ -z "$(ls .whl 2>/dev/null)" ]; then
  mkdir -p .whl
  "$PY" -m pip download -q --only-binary=:all: --python-version 312 --implementation cp \
    --abi cp312 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any --no-deps -d .whl \
    pydantic pydantic-core annotated-types typing-inspection netCDF4 cftime tomli-w pooch \
    platformdirs dask distributed partd locket zict tblib tornado typing-extensions
fi
DATA="${NEURODFC_DATA:-../shared/data}"
mkdir -p .device_data
cp -r "$DATA/mnist" .device_data/
chmod -R u+w .device_data
du -sh .whl .device_data
