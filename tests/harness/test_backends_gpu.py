"""Backends on a CUDA GPU (run on a lent GPU machine by benchmarks/gpu_check.sh; skipped elsewhere):
hf with the base in 4 or 8 bits, a LoRA adapter over a 4-bit base (a QLoRA checkpoint), vllm
beside hf, and vllm's adapters sharing one engine. Each skip names what is missing."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from harness.records import RESULTS, SAMPLES
from tests.helpers import harness, read_jsonl

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
needs_bnb = pytest.mark.skipif(
    find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed (pip install 'code-harness[quant]')"
)
needs_vllm = pytest.mark.skipif(
    find_spec("vllm") is None, reason="vLLM is not installed (pip install 'code-harness[vllm]')"
)
SAMPLED = ["--limit", "6", "--n", "4", "--k", "1,4", "--temperature", "0.8", "--max-new-tokens", "48"]
GREEDY = ["--limit", "10", "--temperature", "0", "--max-new-tokens", "48"]


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benchmarks.gpu_check import build_wide_checkpoint

    return build_wide_checkpoint(tmp_path_factory.mktemp("wide") / "model")


@pytest.fixture(scope="module")
def adapters(wide_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two LoRA adapters of the wide checkpoint with different non-zero weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("adapters")
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(wide_checkpoint)
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(base, lora).save_pretrained(folder / f"checkpoint-{seed}")
    return sorted(folder.iterdir())


def run(model: Path, out: Path, *flags: object) -> dict:
    assert harness("run", "--model", model, "--task", "humaneval", "--out", out, *flags) == 0
    return json.loads((out / "config.json").read_text())["manifest"]["generation"]


@needs_bnb
@pytest.mark.parametrize("bits", [4, 8])
def test_hf_loads_the_base_in_fewer_bits(wide_checkpoint, tmp_path, bits):
    generation = run(wide_checkpoint, tmp_path / "run", "--backend", "hf", f"--load-in-{bits}bit", *SAMPLED)
    assert generation["quantization"] == f"bitsandbytes-{bits}bit" and generation["device"] == "cuda"
    assert len(read_jsonl(tmp_path / "run" / SAMPLES)) == 24 and len(read_jsonl(tmp_path / "run" / RESULTS)) == 24


@needs_bnb
def test_a_qlora_adapter_over_a_4bit_base(adapters, wide_checkpoint, tmp_path):
    generation = run(adapters[0], tmp_path / "qlora", "--backend", "hf", "--load-in-4bit", *GREEDY)
    assert generation["base_model"] == str(wide_checkpoint) and generation["quantization"] == "bitsandbytes-4bit"
    assert len(read_jsonl(tmp_path / "qlora" / SAMPLES)) == 10


@needs_vllm
def test_vllm_runs_humaneval_in_the_layout_of_hf(wide_checkpoint, tmp_path):
    generation = run(wide_checkpoint, tmp_path / "vllm", "--backend", "vllm", *SAMPLED)
    run(wide_checkpoint, tmp_path / "hf", "--backend", "hf", *SAMPLED)
    assert generation["backend"] == "vllm" and generation["vllm"]
    metrics = [json.loads((tmp_path / b / "metrics.json").read_text()) for b in ("vllm", "hf")]
    assert sorted(metrics[0]["metrics"]) == sorted(metrics[1]["metrics"])
    assert len(read_jsonl(tmp_path / "vllm" / SAMPLES)) == 24


@needs_vllm
def test_vllm_adapters_share_one_engine(adapters, tmp_path, monkeypatch):
    import vllm

    engines = []
    real = vllm.LLM.__init__

    def counting(self, *args, **kwargs):
        engines.append(kwargs.get("model"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(vllm.LLM, "__init__", counting)
    argv = ["run", "--backend", "vllm", "--model", *adapters, "--task", "humaneval", "--out", tmp_path / "s"]
    assert harness(*argv, *GREEDY) == 0
    assert len(engines) == 1
    raws = [[r["raw"] for r in read_jsonl(tmp_path / "s" / a.name / "humaneval" / SAMPLES)] for a in adapters]
    assert len(raws[0]) == 10 and raws[0] != raws[1]


def test_auto_picks_vllm_where_it_is_installed(wide_checkpoint, tmp_path):
    generation = run(wide_checkpoint, tmp_path / "auto", "--limit", "1", "--temperature", "0", "--max-new-tokens", "8")
    assert generation["backend"] == ("vllm" if find_spec("vllm") else "hf")
