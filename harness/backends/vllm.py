"""vLLM backend: offline batched generation in process, on one GPU or several (tensor parallel).

One `LLM` engine per checkpoint series step; each batch (a wave of up to --batch-size
sequences, 4096 by default) is one `generate` call holding every request with its own
`SamplingParams` (n samples, its own seed), so vLLM schedules the whole wave itself; a wave is
also the most a killed run loses. A LoRA adapter runs as its base model plus a `LoRARequest`
(never merged), and adapters of one base share one engine. The translation from our settings
to vLLM's arguments is in plain functions (engine_kwargs, sampling_kwargs, lora_kwargs), tested
against vLLM's own classes where vLLM is installed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import version
from typing import Any

from harness.backends.base import Batch, Generation, request_seed
from harness.backends.checkpoint import adapter_base, adapter_rank, chat_text, same_path, tokenizer_source
from harness.config import RunConfig, Sampling
from harness.errors import UsageError

# The ranks vLLM's LoRAConfig accepts as max_lora_rank (vllm.config.lora.MaxLoRARanks).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
INSTALL = "pip install 'code-harness[vllm]'"


def engine_kwargs(config: RunConfig) -> dict[str, Any]:
    """The arguments of `vllm.LLM` for this run (an adapter: its base, with LoRA enabled)."""
    base = adapter_base(config.model or "")
    kwargs: dict[str, Any] = {
        "model": base or config.model,
        "tokenizer": tokenizer_source(config.model or "", base),
        "dtype": config.dtype or "auto",
        "tensor_parallel_size": config.tensor_parallel_size or 1,
        "seed": config.sampling.seed,
    }
    optional = {
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": config.max_model_len,  # None: the model's own context length
        "quantization": config.quantization,
    }
    kwargs.update({key: value for key, value in optional.items() if value is not None})
    if base is not None:
        kwargs.update(enable_lora=True, max_lora_rank=lora_slot(adapter_rank(config.model or "")))
    return kwargs


def lora_slot(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of this rank."""
    for slot in LORA_RANKS:
        if slot >= rank:
            return slot
    raise UsageError(f"a LoRA rank of {rank} is more than vLLM supports ({LORA_RANKS[-1]})")


def sampling_kwargs(sampling: Sampling, stop: Sequence[str], n: int, seed: int) -> dict[str, Any]:
    """The arguments of `vllm.SamplingParams` for `n` samples of one prompt."""
    greedy = sampling.greedy
    return {
        "n": n,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "top_k": -1 if greedy or not sampling.top_k else sampling.top_k,  # -1: off, in every vLLM version
        "repetition_penalty": sampling.repetition_penalty,
        "max_tokens": sampling.max_new_tokens,
        "stop": list(stop),
        # The raw text keeps its stop string, as the hf backend's does; the task trims it.
        "include_stop_str_in_output": True,
        "seed": seed,
    }


def lora_kwargs(adapter: str, number: int) -> dict[str, Any]:
    """The arguments of `vllm.lora.request.LoRARequest` for an adapter folder (number >= 1)."""
    return {"lora_name": f"adapter{number}", "lora_int_id": number, "lora_path": adapter}


class VLLMBackend:
    def __init__(self, config: RunConfig) -> None:
        if not config.model:
            raise UsageError("--model is required")
        vllm = _import_vllm()
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--backend vllm needs a CUDA GPU; use --backend hf here")
        self.kwargs = engine_kwargs(config)
        try:
            self.llm = vllm.LLM(**self.kwargs)
        except (OSError, ValueError) as exc:
            lines = str(exc).strip().splitlines()
            raise UsageError(f"vLLM cannot load {self.kwargs['model']!r}: {lines[0] if lines else exc}") from None
        self.tokenizer = self.llm.get_tokenizer()
        self.model_name = config.model
        self.lora: Any = None
        self._loras = 0
        if adapter_base(config.model) is not None:
            self._use_adapter(config.model)

    def switch(self, model: str) -> bool:
        """Use `model` if it is an adapter of this engine's base that fits its LoRA slots."""
        base = adapter_base(model)
        fits = self.kwargs.get("enable_lora") and adapter_rank(model) <= self.kwargs["max_lora_rank"]
        if base is None or not fits or not same_path(base, self.kwargs["model"]):
            return False
        self.model_name = model
        self._use_adapter(model)
        return True

    def _use_adapter(self, adapter: str) -> None:
        from vllm.lora.request import LoRARequest

        self._loras += 1  # a new id per adapter, so that vLLM never reuses another's weights
        self.lora = LoRARequest(**lora_kwargs(adapter, self._loras))

    def close(self) -> None:
        import gc

        import torch

        del self.llm
        gc.collect()
        torch.cuda.empty_cache()

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def describe(self) -> dict[str, Any]:
        import torch

        info = {
            "backend": "vllm",
            "vllm": version("vllm"),
            "torch": torch.__version__,
            "transformers": version("transformers"),
            "device": "cuda",
            "gpu": torch.cuda.get_device_name(0),
            "engine": dict(self.kwargs),
            "chat_template_sha256": hashlib.sha256(
                (getattr(self.tokenizer, "chat_template", None) or "").encode()
            ).hexdigest(),
        }
        if self.lora is not None:
            info.update(base_model=self.kwargs["model"], adapter=self.model_name)
        return info

    def generate(
        self, batches: Iterable[Batch], sampling: Sampling, stop: Sequence[str], chat: bool
    ) -> Iterator[tuple[Batch, list[list[Generation]]]]:
        from vllm import SamplingParams

        for batch in batches:
            # Token ids, tokenized as the hf backend does: no second BOS before a chat template's own.
            prompts = [{"prompt_token_ids": self._tokens(r.prompt, chat)} for r in batch.requests]
            params = [
                SamplingParams(**sampling_kwargs(sampling, stop, r.count, request_seed(batch.seed, r)))
                for r in batch.requests
            ]
            outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=True)
            yield batch, [[_generation(o) for o in output.outputs] for output in outputs]

    def _tokens(self, prompt: str, chat: bool) -> list[int]:
        text = chat_text(self.tokenizer, prompt) if chat else prompt
        return list(self.tokenizer.encode(text, add_special_tokens=not chat))


def _generation(output: Any) -> Generation:
    """A vLLM CompletionOutput: finish_reason "length" or "stop", where stop_reason tells a stop
    string (str) or stop token (int) from the end of sequence (None)."""
    if output.finish_reason == "length":
        reason = "length"
    else:
        reason = "eos" if output.stop_reason is None else "stop"
    return Generation(text=output.text, finish_reason=reason)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise UsageError(f"--backend vllm needs vLLM, which is not installed: {INSTALL}") from None
    return vllm
