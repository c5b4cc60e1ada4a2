"""QLoRA on a CUDA GPU: the tiny checkpoint loaded in 4-bit NF4 with bitsandbytes, trained with
paged AdamW in half precision, then evaluated by `harness run` (about a minute on an H100)."""

from __future__ import annotations

import json

import pytest

from harness.records import SAMPLES
from tests.helpers import harness, read_jsonl
from tests.tasks.conftest import DATA

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module", autouse=True)
def finetune_packages():
    for package in ("trl", "peft", "bitsandbytes"):
        pytest.importorskip(package, reason=f"QLoRA needs {package}: pip install -e '.[hf,finetune]'")


def test_qlora_trains_in_4bit_and_the_adapter_runs_in_the_harness(tiny_checkpoint, tmp_path):
    out = tmp_path / "qlora"
    data = ["--task", "codealpaca", "--data", DATA / "codealpaca_train.jsonl"]
    data += ["--guard-data", DATA / "codealpaca.jsonl"]
    steps = ["--max-steps", 20, "--save-every", 10, "--batch-size", 4, "--grad-accum", 1, "--lr", "1e-2"]
    lora = ["--target-modules", "all-linear", "--lora-dropout", 0, "--load-in-4bit"]
    assert harness("finetune", "--base", tiny_checkpoint, "--out", out, *data, *steps, *lora) == 0

    record = json.loads((out / "final" / "finetune.json").read_text())
    settings = record["hyperparameters"]
    assert settings["load_in_4bit"] is True and settings["optim"] == "paged_adamw_32bit"
    assert settings["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert record["packages"]["bitsandbytes"] is not None and record["step"] == 20
    losses = record["losses"]
    assert losses["probe_after"] < losses["probe_before"], losses
    assert (out / "checkpoint-10" / "adapter_model.safetensors").exists()

    run = tmp_path / "run"
    evaluate = ["--task", "humaneval", "--limit", 2, "--temperature", 0, "--max-new-tokens", 16, "--device", "cuda"]
    assert harness("run", "--model", out / "final", *evaluate, "--out", run) == 0
    generation = json.loads((run / "config.json").read_text())["manifest"]["generation"]
    assert generation["device"].startswith("cuda") and generation["base_model"]
    assert len(read_jsonl(run / SAMPLES)) == 2
