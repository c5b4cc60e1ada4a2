"""Generation backends, registered under the entry-point group `harness.backends`.

`hf` (transformers, CPU or GPU), `vllm` (offline batched generation on GPUs) and `openai` (any
OpenAI-compatible server). `auto` picks vllm where it is installed and a GPU is present, else hf.
This module stays light: `harness evaluate` imports it, and must not import torch.
"""

from __future__ import annotations

from functools import cache
from importlib.util import find_spec

# Sequences per batch when --batch-size is not given. vLLM schedules a batch itself, so its
# batches are waves of thousands; a wave is also the most that a killed run loses.
DEFAULT_BATCH_SIZE = {"vllm": 4096}
FALLBACK_BATCH_SIZE = 16

# Settings that only one backend reads: giving one to another backend is a mistake worth a message.
ONLY_FOR = {
    "tensor_parallel_size": "vllm",
    "gpu_memory_utilization": "vllm",
    "max_model_len": "vllm",
    "quantization": "vllm",
    "load_in_bits": "hf",
    "base_url": "openai",
    "api_key": "openai",
    "concurrency": "openai",
    "request_timeout": "openai",
}


def choose(name: str) -> str:
    """The backend `name` stands for: `auto` is vllm where it can run, else hf."""
    if name != "auto":
        return name
    return "vllm" if find_spec("vllm") is not None and cuda_available() else "hf"


def default_batch_size(backend: str) -> int:
    return DEFAULT_BATCH_SIZE.get(backend, FALLBACK_BATCH_SIZE)


@cache
def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (False where torch is not installed)."""
    if find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()
