"""The hf backend on a CUDA GPU (run on a lent GPU machine; skipped elsewhere)."""

from __future__ import annotations

import json

import pytest

from harness.records import RESULTS, SAMPLES
from tests.helpers import harness, read_jsonl

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_auto_device_generates_on_cuda_in_half_precision(tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    assert (
        harness(
            "run",
            "--model",
            tiny_checkpoint,
            "--task",
            "humaneval",
            "--limit",
            "4",
            "--n",
            "5",
            "--k",
            "1,5",
            "--temperature",
            "0.8",
            "--max-new-tokens",
            "32",
            "--out",
            out,
        )
        == 0
    )
    generation = json.loads((out / "config.json").read_text())["manifest"]["generation"]
    assert generation["device"] == "cuda" and generation["dtype"] in {"bfloat16", "float16"}
    assert len(read_jsonl(out / SAMPLES)) == 20 and len(read_jsonl(out / RESULTS)) == 20


def test_cuda_generation_is_reproducible_with_a_seed(tiny_checkpoint, tmp_path):
    raws = []
    for name in ("a", "b"):
        assert (
            harness(
                "run",
                "--model",
                tiny_checkpoint,
                "--task",
                "humaneval",
                "--limit",
                "2",
                "--n",
                "4",
                "--temperature",
                "0.8",
                "--max-new-tokens",
                "32",
                "--device",
                "cuda",
                "--out",
                tmp_path / name,
            )
            == 0
        )
        raws.append([r["raw"] for r in read_jsonl(tmp_path / name / SAMPLES)])
    assert raws[0] == raws[1]
