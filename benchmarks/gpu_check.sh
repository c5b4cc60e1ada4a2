#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA GPU (about 3 minutes on an H100):
#   1. the gpu-marked tests: hf on CUDA (bf16, 4 and 8 bits, a QLoRA adapter over a 4-bit base),
#      vllm beside hf and vllm's adapters sharing one engine (each skipped, with the reason, where
#      bitsandbytes or vllm is missing);
#   2. benchmarks/gpu_check.py: HumanEval's 164 prompts through each backend, generated tokens
#      per second, and how often greedy completions equal hf's.
# PYTHON=... picks the interpreter (default: .venv/bin/python, else python3). Exit status: 0 when
# both parts pass.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
    echo "gpu_check: nvidia-smi found no GPU"
# The plugins are entry points: without the project installed, install it (offline, no dependencies).
if ! "$PY" -c "import importlib.metadata as m; m.distribution('code-harness')" 2>/dev/null; then
    echo "gpu_check: installing the project into $PY (no dependencies, no download) for its entry points"
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . || exit 2
fi
"$PY" - <<'PY' || exit 2
import importlib.util, torch, transformers
print(f"gpu_check: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"cuda {torch.cuda.is_available()} ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'})")
for name, extra in [("bitsandbytes", "quant"), ("vllm", "vllm")]:
    if importlib.util.find_spec(name) is None:
        print(f"gpu_check: {name} is not installed (pip install 'code-harness[{extra}]'); its checks are skipped")
PY

started=$SECONDS
"$PY" -m pytest -p no:cacheprovider -q -rs -m gpu tests/harness/test_gpu.py tests/harness/test_backends_gpu.py
tests=$?
echo "gpu_check: tests finished in $((SECONDS - started)) s (exit $tests)"

started=$SECONDS
"$PY" benchmarks/gpu_check.py
bench=$?
echo "gpu_check: benchmark finished in $((SECONDS - started)) s (exit $bench)"
exit $((tests || bench))
