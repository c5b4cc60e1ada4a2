"""The hf backend's loading options on the CPU: --dtype, and the one-line refusal of 4/8-bit
loading without CUDA (the GPU side is in test_backends_gpu.py)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import harness

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's side")


def test_dtype_is_passed_to_the_model_and_recorded(tiny_checkpoint, tmp_path):
    argv = ["run", "--backend", "hf", "--model", tiny_checkpoint, "--task", "humaneval", "--out", tmp_path / "run"]
    assert harness(*argv, "--limit", "1", "--temperature", "0", "--max-new-tokens", "8", "--dtype", "bfloat16") == 0
    generation = json.loads((tmp_path / "run" / "config.json").read_text())["manifest"]["generation"]
    assert generation["dtype"] == "bfloat16" and generation["device"] == "cpu"


@pytest.mark.parametrize("bits", [4, 8])
def test_fewer_bits_need_cuda(tiny_checkpoint, tmp_path, capsys, bits):
    argv = ["run", "--backend", "hf", "--model", tiny_checkpoint, "--task", "humaneval", "--out", tmp_path / "run"]
    assert harness(*argv, f"--load-in-{bits}bit") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"harness: error: --load-in-{bits}bit needs a CUDA GPU (bitsandbytes); the device is cpu"


def test_unknown_dtype_is_one_line(tiny_checkpoint, tmp_path, capsys):
    argv = ["run", "--model", tiny_checkpoint, "--task", "humaneval", "--out", tmp_path / "run", "--dtype", "fp7"]
    assert harness(*argv) == 2
    assert "--dtype takes auto, float16, bfloat16, float32" in capsys.readouterr().err
