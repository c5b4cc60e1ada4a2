"""Hugging Face transformers backend: batched `generate` on CPU or GPU.

Loads full checkpoints, hub ids (through the ordinary `from_pretrained` path) and PEFT
adapters (a folder with adapter_config.json: its base model, then the adapter on top), with
the base in 4 or 8 bits where asked (bitsandbytes, on CUDA: QLoRA checkpoints). In a
checkpoint series, adapters of the loaded base are swapped in without loading the base again.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import version
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.backends.base import Batch, Generation
from harness.backends.checkpoint import adapter_base, chat_text, same_path, tokenizer_source
from harness.config import RunConfig, Sampling
from harness.errors import UsageError


class HFBackend:
    def __init__(self, config: RunConfig) -> None:
        if not config.model:
            raise UsageError("--model is required")
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.bits = config.load_in_bits
        if self.bits and not self.device.startswith("cuda"):
            raise UsageError(f"--load-in-{self.bits}bit needs a CUDA GPU (bitsandbytes); the device is {self.device}")
        self.model_name = config.model
        self.adapter = adapter_base(config.model)  # the adapter's base model, or None
        self.base_name = self.adapter or config.model  # what the weights in memory were loaded from
        self._load_tokenizer(tokenizer_source(config.model, self.adapter))
        self.model = self._load_model(config.model)
        self._adapters = 1  # adapter names loaded so far (each swap gets a new one)

    def _load_tokenizer(self, source: str) -> None:
        self.tokenizer_name = source
        self.tokenizer = load_pretrained(AutoTokenizer, source)
        self.tokenizer.padding_side = "left"  # decoder-only models continue the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _load_model(self, model: str) -> Any:
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.bits:
            # A quantized model cannot be moved with .to(): it is placed while it loads.
            kwargs.update(quantization_config=_bnb_config(self.bits, self.dtype), device_map={"": self.device})
        base = load_pretrained(AutoModelForCausalLM, self.base_name, **kwargs)
        if not self.bits:
            base = base.to(self.device)
        if self.adapter is not None:
            from peft import PeftModel

            base = PeftModel.from_pretrained(base, model, adapter_name="adapter0")
        return base.eval()

    def switch(self, model: str) -> bool:
        """Swap in `model` if it is an adapter of the base in memory (peft load_adapter/set_adapter)."""
        base = adapter_base(model)
        if base is None or not same_path(base, self.base_name):
            return False
        from peft import PeftModel

        name = f"adapter{self._adapters}"
        self._adapters += 1
        if isinstance(self.model, PeftModel):
            old = self.model.active_adapter
            self.model.load_adapter(model, adapter_name=name)
            self.model.set_adapter(name)
            self.model.delete_adapter(old)  # one adapter in memory at a time
        else:  # the base itself was evaluated before its adapters
            self.model = PeftModel.from_pretrained(self.model, model, adapter_name=name)
        self.model.eval()
        self.model_name, self.adapter = model, base
        source = tokenizer_source(model, base)
        if source != self.tokenizer_name:
            self._load_tokenizer(source)
        return True

    def close(self) -> None:
        """Free the model's memory (a series loads the next checkpoint after this)."""
        del self.model
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def describe(self) -> dict[str, Any]:
        info = {
            "backend": "hf",
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "chat_template_sha256": _sha256(getattr(self.tokenizer, "chat_template", None) or ""),
        }
        if self.adapter is not None:
            info.update(base_model=self.adapter, adapter=self.model_name, peft=version("peft"))
        if self.bits:
            info.update(quantization=f"bitsandbytes-{self.bits}bit", bitsandbytes=version("bitsandbytes"))
        return info

    def generate(
        self, batches: Iterable[Batch], sampling: Sampling, stop: Sequence[str], chat: bool
    ) -> Iterator[tuple[Batch, list[list[Generation]]]]:
        for batch in batches:
            yield batch, self._generate_batch(batch, sampling, stop, chat)

    @torch.inference_mode()
    def _generate_batch(
        self, batch: Batch, sampling: Sampling, stop: Sequence[str], chat: bool
    ) -> list[list[Generation]]:
        texts = [self._render(request.prompt, chat) for request in batch.requests]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
        counts = torch.tensor([request.count for request in batch.requests])
        inputs = {key: value.repeat_interleave(counts, dim=0).to(self.device) for key, value in encoded.items()}
        torch.manual_seed(batch.seed)
        try:
            output = self.model.generate(**inputs, **self._generate_kwargs(sampling, stop))
        except torch.OutOfMemoryError:
            raise UsageError(
                f"out of memory generating {int(counts.sum())} sequences at once; lower --batch-size"
            ) from None
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        flat = [self._generation(tokens, stop) for tokens in new_tokens]
        grouped, start = [], 0
        for request in batch.requests:
            grouped.append(flat[start : start + request.count])
            start += request.count
        return grouped

    def _render(self, prompt: str, chat: bool) -> str:
        return chat_text(self.tokenizer, prompt) if chat else prompt

    def _generate_kwargs(self, sampling: Sampling, stop: Sequence[str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "repetition_penalty": sampling.repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        if stop:
            # Each sequence stops at its own first stop string; the batch ends when all have.
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        return kwargs

    def _generation(self, tokens: torch.Tensor, stop: Sequence[str]) -> Generation:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if any(s in text for s in stop):
            reason = "stop"
        elif self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id in tokens.tolist():
            reason = "eos"
        else:
            reason = "length"
        return Generation(text=text, finish_reason=reason)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is no device torch knows (try auto, cpu, cuda, cuda:1)") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available here")
    return device


DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype:
    """--dtype, or by default: bfloat16 (else float16) on CUDA, float32 on a CPU."""
    if dtype not in (None, "auto"):
        return DTYPES[dtype]  # the config has checked the name
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _bnb_config(bits: int, dtype: torch.dtype) -> Any:
    """bitsandbytes quantization of the base (NF4 with double quantization, as QLoRA trains)."""
    from importlib.util import find_spec

    if find_spec("bitsandbytes") is None:
        raise UsageError(f"--load-in-{bits}bit needs bitsandbytes: pip install 'code-harness[quant]'")
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
    )


def load_pretrained(cls: Any, source: str, **kwargs: Any) -> Any:
    """cls.from_pretrained(source, ...), where a missing or unreadable checkpoint is bad input (exit 2)."""
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load {source!r}: {first_line}") from None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
