"""The fine-tune itself: LoRA (or QLoRA) with trl's SFTTrainer, checkpoints the harness can evaluate.

DIR/checkpoint-<step>/ and DIR/final/ each hold the adapter, the tokenizer and finetune.json (the
provenance: base model, data and its hash, hyperparameters, steps, losses), so `harness run --model
DIR/final` works as it is. Losses go to DIR/trainer_log.jsonl as they are logged. Ctrl-C stops after
the current step and saves a checkpoint that --resume continues; a kill loses at most the steps since
the last checkpoint (--save-every).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

import harness
from finetune import data as training_data
from finetune.config import SETTINGS, FinetuneConfig
from harness.backends.hf import load_pretrained
from harness.errors import UsageError

LOG = "trainer_log.jsonl"
PROVENANCE = "finetune.json"
PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets")


class Interrupted(Exception):
    """Ctrl-C stopped the training after a checkpoint was saved (the CLI exits 130)."""


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Train an adapter as `config` says; return the provenance written to DIR/final/finetune.json."""
    config = config.resolved()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, chat = load_tokenizer(config)
    dataset = training_data.build(config, tokenizer, chat)
    _say(_data_line(config, dataset.report))
    (out / SETTINGS).write_text(json.dumps(config.settings(), indent=2) + "\n")
    model = load_model(config)
    trainer, progress = build_trainer(config, model, tokenizer, dataset)
    losses = {"probe_before": _probe_loss(trainer)}
    progress.provenance = lambda state: provenance(config, dataset.report, trainer, state, losses)
    resume_from = _resume_point(config)
    with _stop_on_ctrl_c(progress):
        trainer.train(resume_from_checkpoint=resume_from)
    state = trainer.state
    if progress.stop_requested and state.global_step < state.max_steps:
        raise Interrupted(
            f"interrupted at step {state.global_step}: {out / f'checkpoint-{state.global_step}'} is saved; "
            "add --resume to the same command to continue"
        )
    losses["probe_after"] = _probe_loss(trainer)
    record = provenance(config, dataset.report, trainer, state, losses)
    trainer.save_model(str(out / "final"))
    _write_json(out / "final" / PROVENANCE, record)
    _say(_loss_line(out, losses, dataset.report))
    if config.merge:
        _say(f"merged weights: {merge(config, out / 'final', tokenizer)}")
    if config.eval_task:
        print(evaluate_checkpoints(config, chat))
    return record


def load_tokenizer(config: FinetuneConfig) -> tuple[Any, bool]:
    """The base's tokenizer, and whether training uses its chat template (as `harness run` would)."""
    from transformers import AutoTokenizer

    tokenizer = load_pretrained(AutoTokenizer, config.base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    has_template = bool(getattr(tokenizer, "chat_template", None))
    chat = has_template if config.chat is None else config.chat
    if chat and not has_template:
        raise UsageError(f"--chat: {config.base} has no chat template")
    if not chat:
        # The saved tokenizer then has none either, so `harness run --model DIR/final` prompts as trained.
        tokenizer.chat_template = None
    return tokenizer, chat


def load_model(config: FinetuneConfig) -> Any:
    """The base model: full precision on the CPU, half on CUDA, 4-bit NF4 for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
    kwargs: dict[str, Any] = {"dtype": half or torch.float32}
    if config.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=half or torch.bfloat16,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = load_pretrained(AutoModelForCausalLM, config.base, **kwargs)
    if config.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    return model


def lora_config(config: FinetuneConfig, model: Any) -> Any:
    """LoRA on the named modules, or on peft's default modules for the architecture."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=_target_modules(config, model),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _target_modules(config: FinetuneConfig, model: Any) -> list[str] | str:
    """--target-modules checked against the model (a typo is one line, not peft's traceback)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if not config.target_modules:
        targets = DEFAULTS.get(model.config.model_type)
        if targets is None:
            raise UsageError(
                f"peft has no default LoRA modules for {model.config.model_type!r} models; "
                "name them with --target-modules (e.g. q_proj,v_proj, or all-linear)"
            )
        return list(targets)
    if config.target_modules == ("all-linear",):
        return "all-linear"
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in config.target_modules if t not in present]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise UsageError(f"--target-modules: the base has no module {missing[0]!r} (linear: {', '.join(linear)})")
    return list(config.target_modules)


def build_trainer(config: FinetuneConfig, model: Any, tokenizer: Any, dataset: Any) -> tuple[Any, Progress]:
    """trl's SFTTrainer on the tokenized rows (labels -100 on the prompt), with our callback."""
    from datasets import Dataset
    from trl import SFTTrainer

    evaluation = {"probe": Dataset.from_list(dataset.probe)}
    if dataset.validation:
        evaluation["validation"] = Dataset.from_list(dataset.validation)
    progress = Progress(Path(config.out))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        trainer = SFTTrainer(
            model=model,
            args=training_arguments(config, len(dataset.train)),
            train_dataset=Dataset.from_list(dataset.train),
            eval_dataset=evaluation,
            processing_class=tokenizer,
            peft_config=lora_config(config, model),
            callbacks=[progress],
        )
    return trainer, progress


def training_arguments(config: FinetuneConfig, examples: int) -> Any:
    """SFTConfig from our settings; warmup as a number of steps (transformers 4 and 5 agree on that)."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    per_epoch = math.ceil(examples / (config.batch_size * config.grad_accum))
    total = config.max_steps or math.ceil(per_epoch * (config.epochs or 1))
    warmup = round(config.warmup * total) if config.warmup < 1 else int(config.warmup)
    return SFTConfig(
        output_dir=config.out,
        max_steps=config.max_steps or -1,
        num_train_epochs=config.epochs or 1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type=config.scheduler,
        warmup_steps=warmup,
        optim=config.optim,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        use_cpu=not cuda,
        gradient_checkpointing=cuda,  # memory matters on a GPU; on the CPU it only costs time
        logging_steps=1 if total <= 100 else 10,
        save_strategy="steps",
        save_steps=config.save_every,
        eval_strategy="steps" if config.eval_every else "no",
        eval_steps=config.eval_every,
        seed=config.seed,
        data_seed=config.seed,
        max_length=config.max_seq_len,
        completion_only_loss=True,
        report_to="none",
    )


class Progress(TrainerCallback):
    """Appends each log to DIR/trainer_log.jsonl, writes finetune.json into each checkpoint, and
    turns a Ctrl-C into "save a checkpoint and stop" at the end of the current step."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.stop_requested = False
        self.provenance: Any = None  # state -> dict, set once the trainer exists

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            with open(self.out / LOG, "a") as log:
                log.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = self.out / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir() and self.provenance is not None:
            _write_json(folder / PROVENANCE, self.provenance(state))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stop_requested:
            control.should_save = True
            control.should_training_stop = True


@contextmanager
def _stop_on_ctrl_c(progress: Progress) -> Iterator[None]:
    """The first Ctrl-C asks for a checkpoint and a stop after this step; a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        progress.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _say("stopping after this step and saving a checkpoint (Ctrl-C again to abort without saving)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _resume_point(config: FinetuneConfig) -> str | None:
    """The last checkpoint to resume from; the log keeps only the steps that checkpoint holds."""
    if not config.resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(config.out)
    step = int(last.rsplit("-", 1)[-1])
    log = Path(config.out) / LOG
    if log.exists():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip().endswith("}")]
        log.write_text("".join(json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= step))
    _say(f"resuming from {last} (step {step})")
    return last


def _probe_loss(trainer: Any) -> float:
    """Mean loss on the answers of the first training examples (prompt tokens excluded)."""
    return float(trainer.evaluate(eval_dataset="probe", metric_key_prefix="probe")["probe_loss"])


def provenance(config: FinetuneConfig, report: dict, trainer: Any, state: Any, losses: dict) -> dict[str, Any]:
    """What finetune.json says about an adapter: enough to reproduce or compare it."""
    keys = ("loss", "eval_validation_loss")
    last = {key: next((h[key] for h in reversed(state.log_history) if key in h), None) for key in keys}
    peft_config = trainer.model.peft_config["default"]
    targets = peft_config.target_modules
    return {
        "base_model": config.base,
        "task": config.task,
        "chat": report["chat"],
        "data": report,
        "hyperparameters": config.settings(),
        "lora": {
            "r": peft_config.r,
            "alpha": peft_config.lora_alpha,
            "dropout": peft_config.lora_dropout,
            "target_modules": targets if isinstance(targets, str) else sorted(targets),
        },
        "step": state.global_step,
        "max_steps": state.max_steps,
        "losses": {"train": last["loss"], "validation": last["eval_validation_loss"], **losses},
        "harness": harness.__version__,
        "packages": {name: _version(name) for name in PACKAGES},
    }


def merge(config: FinetuneConfig, adapter: Path, tokenizer: Any) -> Path:
    """DIR/merged: the base with the adapter folded in, as full weights (loaded unquantized)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision, torch.float32)
    base = load_pretrained(AutoModelForCausalLM, config.base, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    target = Path(config.out) / "merged"
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)
    record = json.loads((adapter / PROVENANCE).read_text())
    _write_json(target / PROVENANCE, {**record, "merged_from": str(adapter.resolve())})
    return target


def evaluate_checkpoints(config: FinetuneConfig, chat: bool) -> str:
    """`harness run` (greedy) on every checkpoint-<step> (final/ equals the last); a table of the results."""
    from harness.config import RunConfig, Sampling
    from harness.run import run

    folders = sorted(Path(config.out).glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    records = []
    for folder in folders:
        settings = RunConfig(
            command="run",
            task=config.eval_task,
            model=str(folder),
            limit=config.eval_limit,
            chat=chat,
            sampling=Sampling(temperature=0, max_new_tokens=config.eval_max_new_tokens),
            out=str(Path(config.out) / "eval" / config.eval_task / folder.name),
        )
        _say(f"evaluating {folder} on {config.eval_task}")
        records.append((folder.name, run(settings.resolved())))
    return _eval_table(records)


def _eval_table(records: list[tuple[str, dict]]) -> str:
    names = list(dict.fromkeys(n for _, r in records for n in r["metrics"] if not n.startswith("codebleu_")))
    rows = [["checkpoint", *names]]
    for folder, record in records:
        values = [record["metrics"].get(n) for n in names]
        rows.append([folder, *("-" if v is None else f"{v:.4f}" for v in values)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _data_line(config: FinetuneConfig, report: dict) -> str:
    dropped = ", ".join(f"{n} matching {task}" for task, n in report["contaminated"].items())
    return (
        f"training data: {report['rows']} rows from {report['source']}; dropped {sum(report['contaminated'].values())}"
        f" as evaluation problems ({dropped}), {report['unusable']} without an answer the task reproduces, "
        f"{report['too_long']} with prompts over {config.max_seq_len} tokens; {report['examples']} examples"
        f" ({report['validation']} held out), {'chat template' if report['chat'] else 'raw prompts'}"
    )


def _loss_line(out: Path, losses: dict, report: dict) -> str:
    probe = min(report["examples"], training_data.PROBE_SIZE)
    return (
        f"final adapter: {out / 'final'}  (loss on {probe} training examples: "
        f"{losses['probe_before']:.4f} before, {losses['probe_after']:.4f} after)"
    )


def _write_json(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
