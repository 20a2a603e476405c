#!/usr/bin/env bash
# The GPU checks of a CUDA machine, in one run: the CUDA tests (pytest -m gpu), LUMOS inference
# (benchmarks/bench_inference.py) on the GPU and on the machine's CPU cores, TEAHUPOO stamps rendered
# on the GPU (bench_teahupoo.py) and training (bench_train.py). Each table goes to OUT_DIR/NAME.txt.
#
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh OUT_DIR
#
# PYTHON (default python3) must import lumos_ops (PYTHONPATH=plugins) and its science dependencies
# (torch with CUDA, numpy, scipy, pandas, pyarrow, astropy, sep, pytest); nothing is downloaded.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH="plugins${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cores=$(nproc)
status=0
run() {  # run NAME COMMAND...: tee the output to OUT_DIR/NAME.txt, remember a failure
    local name=$1
    shift
    echo "== $name: $*" | tee "$out/$name.txt"
    "$@" 2>&1 | tee -a "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "== $name failed (rc $rc)" | tee -a "$out/$name.txt"; status=1; }
}
run devices nvidia-smi -L
run tests "$py" -m pytest -m gpu -q -p no:cacheprovider tests/lumos/test_inference.py tests/render/test_render_gpu.py
run inference_cuda "$py" benchmarks/bench_inference.py --device cuda --n 2000 --n-paper 500 --batch-size 2048
run inference_cpu "$py" benchmarks/bench_inference.py --device cpu --n 2000 --n-paper 500 --threads "$cores"
run teahupoo_cuda "$py" benchmarks/bench_teahupoo.py --device cuda --n 8000 --threads "$cores"
run train_cuda "$py" benchmarks/bench_train.py --device cuda --n 20000 --epochs 2 --threads "$cores"
exit $status
