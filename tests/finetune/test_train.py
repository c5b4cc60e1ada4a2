"""`harness finetune` for real on the CPU: the tiny checkpoint, the fixture CodeAlpaca file, trl and peft."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.records import SAMPLES
from tests.helpers import harness, harness_subprocess, read_jsonl
from tests.tasks.conftest import DATA

pytest.importorskip("trl")
pytest.importorskip("peft")
torch = pytest.importorskip("torch")

TRAIN, EVALUATION = DATA / "codealpaca_train.jsonl", DATA / "codealpaca.jsonl"
# A random tiny model learns slowly: a high rate, every linear layer, no dropout (deterministic).
FAST = "--batch-size 4 --grad-accum 1 --lr 1e-2 --target-modules all-linear --lora-dropout 0".split()


def argv(base, out, *extra) -> list[str]:
    data = ["--task", "codealpaca", "--data", str(TRAIN), "--guard-data", str(EVALUATION)]
    return ["finetune", "--base", str(base), "--out", str(out), *data, *FAST, *map(str, extra)]


STEPS = ("--max-steps", 30, "--save-every", 15, "--eval-every", 10)


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, tmp_path_factory) -> Path:
    """One fine-tune of 30 steps, checkpoints at 15 and 30, each evaluated on one HumanEval problem."""
    out = tmp_path_factory.mktemp("finetune") / "adapter"
    evaluation = ("--eval-task", "humaneval", "--eval-limit", 1, "--eval-max-new-tokens", 8)
    assert harness(*argv(tiny_checkpoint, out, *STEPS, *evaluation)) == 0
    return out


def test_training_lowers_the_loss_on_a_set_it_can_memorise(trained):
    losses = json.loads((trained / "final" / "finetune.json").read_text())["losses"]
    assert losses["probe_after"] < losses["probe_before"] - 0.2, losses
    assert losses["train"] is not None and losses["validation"] is not None


def test_checkpoints_hold_adapter_tokenizer_and_provenance(trained, tiny_checkpoint):
    for name, step in (("checkpoint-15", 15), ("checkpoint-30", 30), ("final", 30)):
        folder = trained / name
        for file in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "finetune.json"):
            assert (folder / file).exists(), folder / file
        record = json.loads((folder / "finetune.json").read_text())
        assert record["step"] == step and record["max_steps"] == 30
        assert record["base_model"] == str(Path(tiny_checkpoint).resolve())
        assert record["data"]["sha256"] == hashlib.sha256(TRAIN.read_bytes()).hexdigest()
        assert record["data"]["contaminated"] == {"codealpaca": 1, "humaneval": 1}
        assert record["hyperparameters"]["lr"] == 0.01 and record["lora"]["r"] == 16
    # The adapter names its base by absolute path, so it loads from any working directory.
    adapter = json.loads((trained / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(tiny_checkpoint).resolve())


def test_losses_are_logged_as_training_goes(trained):
    rows = read_jsonl(trained / "trainer_log.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 31))
    assert [r["step"] for r in rows if "eval_validation_loss" in r] == [10, 20, 30]
    assert rows[0]["step"] == 0 and "probe_loss" in rows[0]


def test_eval_task_runs_the_harness_on_every_checkpoint(trained):
    for name in ("checkpoint-15", "checkpoint-30"):
        metrics = json.loads((trained / "eval" / "humaneval" / name / "metrics.json").read_text())
        assert metrics["problems"] == 1 and "pass@1" in metrics["metrics"]


def test_the_adapter_loads_in_harness_run(trained, tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    task = ("--task", "codealpaca", "--data", EVALUATION, "--limit", 2)
    assert (
        harness("run", "--model", trained / "final", *task, "--temperature", 0, "--max-new-tokens", 16, "--out", out)
        == 0
    )
    manifest = json.loads((out / "config.json").read_text())["manifest"]
    assert manifest["generation"]["base_model"] == str(Path(tiny_checkpoint).resolve())
    assert manifest["chat"] is False
    prompts = [r["prompt"] for r in read_jsonl(out / SAMPLES)]
    assert prompts[0].startswith("### Instruction:\n")  # the Alpaca template it was trained with


def test_prompt_tokens_carry_no_loss(tiny_checkpoint, tmp_path):
    from finetune.config import FinetuneConfig
    from finetune.data import build
    from finetune.train import build_trainer, load_model, load_tokenizer

    config = FinetuneConfig(
        base=str(tiny_checkpoint), out=str(tmp_path / "out"), task="codealpaca", data=str(TRAIN),
        guard_data=str(EVALUATION), max_steps=1, lora_dropout=0,
    ).resolved()  # fmt: skip
    tokenizer, chat = load_tokenizer(config)
    dataset = build(config, tokenizer, chat)
    trainer, _ = build_trainer(config, load_model(config), tokenizer, dataset)
    row, prepared = dataset.train[0], trainer.train_dataset[0]
    answer_starts = row["completion_mask"].index(1)
    assert prepared["input_ids"] == row["input_ids"]
    assert prepared["labels"][:answer_starts] == [-100] * answer_starts
    assert prepared["labels"][answer_starts:] == row["input_ids"][answer_starts:]
    # The trainer's loss is the cross-entropy of the answer tokens alone.
    batch = trainer.data_collator([{"input_ids": prepared["input_ids"], "labels": prepared["labels"]}])
    with torch.no_grad():
        output = trainer.model(**batch)
    logits, ids = output.logits[0, :-1], torch.tensor(row["input_ids"][1:])
    answer_only = torch.nn.functional.cross_entropy(logits[answer_starts - 1 :], ids[answer_starts - 1 :])
    everything = torch.nn.functional.cross_entropy(logits, ids)
    assert torch.isclose(output.loss, answer_only, atol=1e-5)
    assert not torch.isclose(output.loss, everything, atol=1e-3)


def test_resume_continues_from_the_saved_step(trained, tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file

    # As after a kill -9 between the checkpoints at 15 and 30: the later work is lost.
    out = tmp_path / "adapter"
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("eval"))
    for lost in ("checkpoint-30", "final"):
        shutil.rmtree(out / lost)
    assert harness(*argv(tiny_checkpoint, out, *STEPS, "--resume")) == 0
    steps = [r["step"] for r in read_jsonl(out / "trainer_log.jsonl") if "loss" in r]
    assert steps == list(range(1, 31))  # the lost steps' log rows were replaced, not repeated
    assert json.loads((out / "checkpoint-30" / "trainer_state.json").read_text())["global_step"] == 30
    resumed = load_file(out / "final" / "adapter_model.safetensors")
    uninterrupted = load_file(trained / "final" / "adapter_model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=1e-4, atol=1e-5)


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(tiny_checkpoint, tmp_path):
    out = tmp_path / "adapter"
    command = argv(tiny_checkpoint, out, "--max-steps", 60, "--save-every", 1000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = out / "trainer_log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and '"loss"' in log.read_text()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("harness: interrupted at step ") and "--resume" in last
    step = int(last.split("at step ")[1].split(":")[0])
    assert 1 <= step < 60 and (out / f"checkpoint-{step}" / "finetune.json").exists()
    assert not (out / "final").exists()
    assert harness(*command, "--resume") == 0
    steps = [r["step"] for r in read_jsonl(log) if "loss" in r]
    assert steps == list(range(1, 61))
    assert json.loads((out / "final" / "finetune.json").read_text())["step"] == 60


def test_merge_writes_full_weights_that_equal_base_plus_adapter(trained, tiny_checkpoint, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.config import FinetuneConfig
    from finetune.train import merge

    config = FinetuneConfig(base=str(Path(tiny_checkpoint).resolve()), out=str(tmp_path), precision="fp32")
    merged_dir = merge(config, trained / "final", AutoTokenizer.from_pretrained(trained / "final"))
    assert not (merged_dir / "adapter_config.json").exists() and (merged_dir / "finetune.json").exists()
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir)(ids).logits
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_checkpoint), trained / "final")
        expected = adapted(ids).logits
    torch.testing.assert_close(merged, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_load_in_4bit_without_cuda_is_one_line(tiny_checkpoint, tmp_path):
    proc = harness_subprocess(*argv(tiny_checkpoint, tmp_path / "out", "--load-in-4bit"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "harness: error: --load-in-4bit (QLoRA) needs a CUDA GPU, and none is available here"
    ]


def test_bad_input_is_one_line_and_exit_2(trained, tiny_checkpoint, tmp_path, capsys):
    cases = [
        (argv(tiny_checkpoint, trained, "--max-steps", 30), "already holds a fine-tune; add --resume"),
        (argv(tiny_checkpoint, tmp_path / "empty", "--resume"), "holds no checkpoint-<step> folder"),
        (argv(tiny_checkpoint, trained, *STEPS, "--lr", "0.5", "--resume"), "other settings (lr: 0.01 -> 0.5)"),
        (argv(tiny_checkpoint, tmp_path / "a", "--target-modules", "qproj"), "has no module 'qproj'"),
        (["finetune", "--base", tiny_checkpoint, "--task", "leetcode", "--out", tmp_path / "b"], "no training split"),
        (argv(tiny_checkpoint, tmp_path / "c", "--lora-dropout", "1"), "--lora-dropout must be in [0, 1)"),
        (argv(tiny_checkpoint, tmp_path / "d", "--warmup", "2.5"), "--warmup is a fraction"),
    ]
    for command, message in cases:
        assert harness(*command) == 2, command
        # Progress lines (the training data's report) may come first; the error is one line, the last.
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("harness: error: ") and message in err[-1], err
        assert not any(line.startswith(("Traceback", "harness: error")) for line in err[:-1]), err
