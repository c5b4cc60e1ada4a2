"""What a checkpoint path is (a full model, a PEFT adapter over a base, or a hub id), without
importing torch: the hf and vllm backends and the checkpoint series all ask."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.errors import UsageError


def adapter_base(model: str) -> str | None:
    """The base model of a PEFT adapter folder, or None for a full checkpoint or a hub id."""
    path = Path(model).expanduser()
    if not path.exists():
        if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
            raise UsageError(f"checkpoint not found: {model}")
        return None  # a hub id such as "bigcode/santacoder"
    config = adapter_config(model)
    if config is None:
        if path.is_dir() and not (path / "config.json").exists():
            hint = f"; for its checkpoints use --model '{model}/checkpoint-*'" if _has_checkpoints(path) else ""
            raise UsageError(
                f"{model} is neither a checkpoint (no config.json) nor an adapter (no adapter_config.json){hint}"
            )
        return None
    base = config.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{path / 'adapter_config.json'} names no base_model_name_or_path")
    return base


def adapter_config(model: str) -> dict[str, Any] | None:
    """The adapter_config.json of an adapter folder, or None."""
    path = Path(model).expanduser() / "adapter_config.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None


def adapter_rank(model: str) -> int:
    """The largest LoRA rank an adapter uses (r, or a larger one from its rank_pattern)."""
    config = adapter_config(model) or {}
    ranks = [config.get("r") or 8, *(config.get("rank_pattern") or {}).values()]
    return max(int(r) for r in ranks)


def tokenizer_source(model: str, base: str | None) -> str:
    """An adapter folder may carry its own tokenizer (fine-tunes often save one); else the base's."""
    if base is not None and not (Path(model) / "tokenizer_config.json").exists():
        return base
    return model


def same_path(a: str, b: str) -> bool:
    """Whether two model names are one checkpoint (paths compared after normalising)."""
    return os.path.normpath(os.path.expanduser(a)) == os.path.normpath(os.path.expanduser(b))


def chat_text(tokenizer: Any, prompt: str) -> str:
    """The prompt as the one user turn of the tokenizer's chat template, ready for the reply."""
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _has_checkpoints(path: Path) -> bool:
    return any(child.name.startswith("checkpoint-") and child.is_dir() for child in path.iterdir())
