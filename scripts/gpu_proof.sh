#!/usr/bin/env bash
# Prove the GPU path on an NVIDIA machine in one go: install the project with CUDA-capable packages, run
# `python -m bench gpu` (ASR on CTranslate2 CUDA, the emotion model on onnxruntime CUDA / TensorRT, each
# checked against the CPU) and the `gpu`-marked tests. Results (JSON + markdown + logs) go to $RESULTS.
#
#   scripts/gpu_proof.sh                 # networked machine: a fresh .venv-gpu with CUDA 12 packages
#   FDRL_OFFLINE=1 scripts/gpu_proof.sh  # no package index: use this Python's packages (+ wheels in ./.whl)
#
# Environment (all optional):
#   PYTHON=python3          interpreter for the venv (or, offline, the one that is used as is)
#   RESULTS=gpu-proof       where the report and logs go (default ./gpu-proof; the device tool passes $OUT)
#   FDRL_WITH_TENSORRT=1    also pip install NVIDIA's TensorRT 10 (tensorrt-cu12>=10.3,<11: NVIDIA's index)
#   BENCH_ARGS="..."        extra arguments for python -m bench gpu (e.g. --runs 50)
#   BENCH_TIMEOUT=480 TESTS_TIMEOUT=300   seconds allowed to the bench and to the gpu-marked tests
# Exit status: that of `python -m bench gpu` (0 all measured stages passed, 1 a stage failed or GPU != CPU,
# 2 no GPU to measure), or 1 when the gpu-marked tests fail.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
RESULTS=${RESULTS:-${OUT:-gpu-proof}}
mkdir -p "$RESULTS"
log() { printf 'gpu_proof: %s\n' "$*" >&2; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
  | tee "$RESULTS/nvidia-smi.txt" >&2 || log "nvidia-smi not found"

if [[ "${FDRL_OFFLINE:-0}" == 1 ]]; then
  # e.g. an isolated GPU box: the image's Python, plus any wheels carried in ./.whl (see the report)
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/fdrl-site .whl/*.whl
    export PYTHONPATH="/tmp/fdrl-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  [[ -x .venv-gpu/bin/python ]] || "$PY" -m venv .venv-gpu
  # shellcheck disable=SC1091
  . .venv-gpu/bin/activate
  PY=python
  python -m pip install -q --upgrade pip
  # the project with everything its tests use (torch from the CPU constraint: it is only the parity reference),
  # then the CUDA 12 builds: onnxruntime-gpu instead of onnxruntime, cuBLAS/cuDNN 9 for CTranslate2 and ORT
  python -m pip install -q -c constraints/cpu.txt -e ".[dev,gpu]"
  python -m pip uninstall -q -y onnxruntime
  python -m pip install -q onnxruntime-gpu nvidia-cublas-cu12 "nvidia-cudnn-cu12==9.*"
  if [[ "${FDRL_WITH_TENSORRT:-0}" == 1 ]]; then
    python -m pip install -q "tensorrt-cu12>=10.3,<11" "cuda-python>=12.2,<13" || log "TensorRT not installed"
  fi
  # CTranslate2 dlopens libcublas.so.12 / libcudnn*.so.9: point the loader at the pip-installed copies
  libs=$(python - <<'EOF'
import os
import nvidia.cublas.lib, nvidia.cudnn.lib
print(":".join(os.path.dirname(m.__file__) for m in (nvidia.cublas.lib, nvidia.cudnn.lib)))
EOF
)
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
"$PY" -m pip list 2>/dev/null | grep -i -E "ctranslate2|onnxruntime|tensorrt|torch|nvidia-(cublas|cudnn|ml)" \
  > "$RESULTS/packages.txt" || true
"$PY" -c "import ctranslate2, onnxruntime as o; print('ctranslate2', ctranslate2.__version__, 'CUDA devices',
ctranslate2.get_cuda_device_count(), '| onnxruntime', o.__version__, o.get_available_providers())" 2>&1 \
  | tee "$RESULTS/probe.txt" >&2 || true

rc=0
# shellcheck disable=SC2086
timeout "${BENCH_TIMEOUT:-480}" "$PY" -m bench gpu --out "$RESULTS" ${BENCH_ARGS:-} 2>&1 | tee "$RESULTS/bench-gpu.log" || rc=${PIPESTATUS[0]}
log "python -m bench gpu exited $rc"
trc=0
timeout "${TESTS_TIMEOUT:-300}" "$PY" -m pytest -q -rs -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_export.py \
  tests/test_backends.py 2>&1 | tee "$RESULTS/pytest-gpu.log" || trc=${PIPESTATUS[0]}
log "gpu-marked tests exited $trc (5 = none collected/all deselected)"
if [[ $rc -eq 0 && $trc -ne 0 && $trc -ne 5 ]]; then
  rc=1
fi
exit "$rc"
