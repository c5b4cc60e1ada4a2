"""Hugging Face transformers backend: batched `generate` on CPU or GPU.

Loads full checkpoints, hub ids (through the ordinary `from_pretrained` path) and PEFT
adapters (a folder with adapter_config.json: its base model, then the adapter on top).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.backends.base import Batch, Generation
from harness.config import RunConfig, Sampling
from harness.errors import UsageError


class HFBackend:
    def __init__(self, config: RunConfig) -> None:
        if not config.model:
            raise UsageError("--model is required")
        self.device = resolve_device(config.device)
        self.adapter = _adapter_base(config.model)
        self.tokenizer = _load(AutoTokenizer, _tokenizer_source(config.model, self.adapter))
        self.tokenizer.padding_side = "left"  # decoder-only models continue the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = self._load_model(config.model).to(self.device).eval()

    def _load_model(self, model: str) -> Any:
        dtype = torch.float32
        if self.device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.adapter is None:
            return _load(AutoModelForCausalLM, model, dtype=dtype)
        from peft import PeftModel

        base = _load(AutoModelForCausalLM, self.adapter, dtype=dtype)
        return PeftModel.from_pretrained(base, model)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def describe(self) -> dict[str, Any]:
        info = {
            "backend": "hf",
            "device": self.device,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "chat_template_sha256": _sha256(getattr(self.tokenizer, "chat_template", None) or ""),
        }
        if self.adapter is not None:
            info.update(base_model=self.adapter, peft=version("peft"))
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
        if not chat:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

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


def _adapter_base(model: str) -> str | None:
    """The base model of a PEFT adapter folder, or None for a full checkpoint."""
    path = Path(model).expanduser()
    if not path.exists():
        if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
            raise UsageError(f"checkpoint not found: {model}")
        return None  # a hub id such as "bigcode/santacoder"
    adapter_config = path / "adapter_config.json"
    if not adapter_config.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise UsageError(
                f"{model} is neither a checkpoint (no config.json) nor an adapter (no adapter_config.json)"
            )
        return None
    base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{adapter_config} names no base_model_name_or_path")
    return base


def _tokenizer_source(model: str, base: str | None) -> str:
    """An adapter folder may carry its own tokenizer (fine-tunes often save one); else the base's."""
    if base is not None and not (Path(model) / "tokenizer_config.json").exists():
        return base
    return model


def _load(cls: Any, source: str, **kwargs: Any) -> Any:
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load {source!r}: {first_line}") from None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
