"""The settings of one fine-tune, their flags, and their validation (in one place: resolved()).

The defaults are the published recipes' (batch size 2, gradient accumulation 4, lr 2e-4, cosine
schedule, sequence length 512, 100 steps, paged AdamW on a GPU). Importing this module is light:
the checks that need torch import it when resolved() runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SETTINGS = "finetune_config.json"  # in --out: the settings a --resume must match
# Settings that do not change the trained weights: a --resume may change them.
INCIDENTAL = ("out", "resume", "merge", "eval_task", "eval_limit", "eval_max_new_tokens")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything `harness finetune` needs to know."""

    base: str  # the base checkpoint: a local folder or a hub id
    out: str  # DIR: checkpoint-<step>/, final/, trainer_log.jsonl
    task: str | None = None  # the task whose prompts are trained and whose evaluation split is guarded
    data: str | None = None  # training rows (None: the task's training split from the hub)
    guard_data: str | None = None  # a local copy of the task's evaluation split, for the guard
    guard_tasks: tuple[str, ...] = ("humaneval",)  # more tasks whose evaluation problems are never trained on
    chat: bool | None = None  # None: the chat template when the base has one (as `harness run` decides)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: peft's default for the architecture
    epochs: float | None = None
    max_steps: int | None = None  # None: 100 (the recipes') unless --epochs is given
    lr: float = 2e-4
    batch_size: int = 2
    grad_accum: int = 4
    max_seq_len: int = 512
    scheduler: str = "cosine"
    warmup: float = 0.0  # below 1: a fraction of the steps; from 1: a number of steps
    optim: str = "auto"  # auto: paged AdamW on CUDA with bitsandbytes, else torch's AdamW
    load_in_4bit: bool = False
    precision: str = "auto"  # auto: bf16 (or fp16) on CUDA, fp32 on the CPU
    eval_every: int | None = None  # validation loss every N steps, on rows held out of training
    save_every: int = 50
    seed: int = 42
    resume: bool = False
    merge: bool = False
    eval_task: str | None = None  # evaluate every saved checkpoint with `harness run` at the end
    eval_limit: int | None = None
    eval_max_new_tokens: int = 512

    def resolved(self) -> FinetuneConfig:
        """Validate, and fill in what depends on the data, the device and the output folder."""
        self._validate_values()
        task = self.task or _task_of_data(self.data)
        steps = self.max_steps if self.max_steps is not None else (None if self.epochs else 100)
        precision, optim = _check_device(self.precision, self.optim, self.load_in_4bit)
        resolved = dataclasses.replace(
            self, base=_absolute_if_local(self.base), task=task, max_steps=steps, precision=precision, optim=optim
        )
        resolved._check_out()
        return resolved

    def settings(self) -> dict[str, Any]:
        """The settings that decide the trained weights: a --resume into the same --out must match."""
        fields = dataclasses.asdict(self)
        for incidental in INCIDENTAL:
            fields.pop(incidental)
        return json.loads(json.dumps(fields))  # as the JSON file holds them: tuples become lists

    def _validate_values(self) -> None:
        checks = [
            (self.task is not None or self.data is not None, "give --task, --data, or both"),
            (self.lora_r >= 1, "--lora-r must be at least 1"),
            (self.lora_alpha > 0, "--lora-alpha must be > 0"),
            (0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)"),
            (self.target_modules is None or len(self.target_modules) > 0, "--target-modules names no module"),
            (self.epochs is None or self.epochs > 0, "--epochs must be > 0"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.lr > 0, "--lr must be > 0"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.grad_accum >= 1, "--grad-accum must be at least 1"),
            (self.max_seq_len >= 8, "--max-seq-len must be at least 8"),
            (self.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.warmup >= 0 and (self.warmup < 1 or self.warmup == int(self.warmup)), _WARMUP),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.eval_every is None or self.eval_every >= 1, "--eval-every must be at least 1"),
            (self.save_every >= 1, "--save-every must be at least 1"),
            (self.eval_limit is None or self.eval_limit >= 1, "--eval-limit must be at least 1"),
            (self.eval_max_new_tokens >= 1, "--eval-max-new-tokens must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        for path, flag in ((self.data, "--data"), (self.guard_data, "--guard-data")):
            if path is not None and not Path(path).exists():
                raise UsageError(f"{flag} {path}: no such file or folder")

    def _check_out(self) -> None:
        """A folder with checkpoints is continued only with --resume, and only with the same settings."""
        out = Path(self.out)
        checkpoints = sorted(out.glob("checkpoint-*")) if out.is_dir() else []
        if self.resume and not checkpoints:
            raise UsageError(f"--resume: {out} holds no checkpoint-<step> folder to resume from")
        if not self.resume and (checkpoints or (out / "final").exists()):
            raise UsageError(f"{out} already holds a fine-tune; add --resume to continue it, or choose another --out")
        saved = out / SETTINGS
        if self.resume and saved.exists():
            old = json.loads(saved.read_text())
            new = self.settings()
            changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
            if changed:
                what = ", ".join(f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in changed)
                raise UsageError(f"--resume: {out} was trained with other settings ({what})")


_WARMUP = "--warmup is a fraction of the steps below 1 (e.g. 0.03) or a whole number of steps (e.g. 10)"


def _task_of_data(data: str | None) -> str:
    """The task a recipe-format --data file trains for, when --task is not given."""
    from finetune.data import recipe_task

    task = recipe_task(data) if data is not None else None
    if task is None:
        raise UsageError(f"--data {data}: name the task its rows belong to with --task (see `harness tasks`)")
    return task


def _absolute_if_local(base: str) -> str:
    """A local base model is recorded by its absolute path, so adapters load from any directory."""
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


def _check_device(precision: str, optim: str, load_in_4bit: bool) -> tuple[str, str]:
    """(precision, optimizer) for this machine; 4-bit, fp16 and paged optimizers need CUDA."""
    import torch

    cuda = torch.cuda.is_available()
    bnb = _has_bitsandbytes()
    if load_in_4bit and not cuda:
        raise UsageError("--load-in-4bit (QLoRA) needs a CUDA GPU, and none is available here")
    if load_in_4bit and not bnb:
        raise UsageError("--load-in-4bit needs bitsandbytes: pip install -e '.[finetune]'")
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise UsageError("--fp16 mixed precision needs a CUDA GPU; on the CPU use --bf16 or the default fp32")
    if optim == "auto":
        optim = "paged_adamw_32bit" if cuda and bnb else "adamw_torch"
    if "8bit" in optim or optim.startswith("paged_"):
        if not (cuda and bnb):
            raise UsageError(f"--optim {optim} needs bitsandbytes and a CUDA GPU; use adamw_torch here")
    return precision, optim


def _has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `harness finetune` (harness/cli.py registers the subcommand)."""
    d = FinetuneConfig
    parser.add_argument("--base", required=True, help="base checkpoint: a local folder or a hub id")
    parser.add_argument("--out", required=True, help="output folder: checkpoint-<step>/, final/, trainer_log.jsonl")
    data = parser.add_argument_group("data")
    data.add_argument("--task", help="codealpaca, codesearchnet, leetcode, ...: its prompt format and its guard")
    data.add_argument(
        "--data",
        help='training rows instead of the task\'s train split: the task\'s columns, {"prompt", "completion"}'
        ' (codealpaca) or {"docstring", "code"} (codesearchnet)',
    )
    data.add_argument("--guard-data", help="local copy of the task's evaluation split (default: from the hub)")
    data.add_argument(
        "--guard-tasks",
        type=_names,
        default=d.guard_tasks,
        help="more tasks whose evaluation problems are dropped from training (default: humaneval; '' for none)",
    )
    chat = data.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=None, help="train in the chat template")
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="raw prompts even if a template exists")
    data.add_argument("--max-seq-len", type=int, default=d.max_seq_len, help="tokens per example (default 512)")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--lora-r", type=int, default=d.lora_r)
    lora.add_argument("--lora-alpha", type=int, default=d.lora_alpha)
    lora.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    lora.add_argument("--target-modules", type=_names, help="e.g. q_proj,v_proj or all-linear (default: per model)")
    lora.add_argument("--load-in-4bit", action="store_true", help="QLoRA: the base in 4-bit NF4 (CUDA only)")
    lora.add_argument("--merge", action="store_true", help="also write merged full weights to DIR/merged")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=float, help="passes over the data (instead of --max-steps)")
    opt.add_argument("--max-steps", type=int, help="optimiser steps (default: 100 unless --epochs)")
    opt.add_argument("--lr", type=float, default=d.lr)
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per device step")
    opt.add_argument("--grad-accum", type=int, default=d.grad_accum, help="device steps per optimiser step")
    opt.add_argument("--scheduler", default=d.scheduler, help=f"one of {', '.join(SCHEDULERS)}")
    opt.add_argument("--warmup", type=float, default=d.warmup, help="fraction of the steps (<1) or steps (>=1)")
    opt.add_argument("--optim", default=d.optim, help="auto, adamw_torch, paged_adamw_32bit, paged_adamw_8bit, ...")
    precision = opt.add_mutually_exclusive_group()
    for name in PRECISIONS[1:]:
        precision.add_argument(f"--{name}", dest="precision", action="store_const", const=name)
    opt.set_defaults(precision="auto")
    opt.add_argument("--seed", type=int, default=d.seed)
    run = parser.add_argument_group("checkpoints and evaluation")
    run.add_argument("--save-every", type=int, default=d.save_every, help="steps between checkpoints (default 50)")
    run.add_argument("--eval-every", type=int, help="validation loss every N steps, on rows held out of training")
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    run.add_argument("--eval-task", help="at the end, `harness run` every saved checkpoint on this task (greedy)")
    run.add_argument("--eval-limit", type=int, help="with --eval-task: only the first N problems")
    run.add_argument("--eval-max-new-tokens", type=int, default=d.eval_max_new_tokens)


def from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The config from parsed flags (every field has a flag of the same name)."""
    names = {f.name for f in dataclasses.fields(FinetuneConfig)}
    return FinetuneConfig(**{k: v for k, v in vars(args).items() if k in names})


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
