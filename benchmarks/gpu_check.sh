#!/usr/bin/env bash
# The GPU checks of one device session, as one script: CuPy tests, then CuPy vs torch CUDA.
#   bash benchmarks/gpu_check.sh [OUTDIR]
# Where the GPU machine lacks a dependency (jsonschema, say) and cannot reach an index, bring wheels
# in .whl/ (ignored by git), e.g. for a Python 3.12 machine:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       -d .whl jsonschema jsonschema-specifications referencing rpds-py
set -o pipefail
OUT=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import cupy, torch, numpy; print('cupy', cupy.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)" \
  | tee -a "$OUT/gpu.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider --durations=5 tests/runtime/test_cupy.py 2>&1 | tee "$OUT/pytest.log"
timeout 240 python3 benchmarks/bench_rnn.py --cell all --backend cupy --sizes 64x512x512,512x512x512,64x1024x1024 2>&1 | tee "$OUT/bench.log"
