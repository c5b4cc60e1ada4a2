"""The vllm backend: our settings translated to vLLM's LLM / SamplingParams / LoRARequest
arguments, checked against vLLM's real classes where vLLM is installed (skipped, with the
reason, where it is not), and the one-line error where it is missing."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

from harness.backends.base import Request, request_seed
from harness.backends.vllm import engine_kwargs, lora_kwargs, lora_slot, sampling_kwargs
from harness.config import RunConfig, Sampling
from tests.helpers import harness

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture
def adapter(tmp_path, tiny_checkpoint):
    """An adapter folder as peft writes it (the config is what the translation reads)."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    config = {"base_model_name_or_path": str(tiny_checkpoint), "r": 24, "rank_pattern": {"q_proj": 40}}
    (folder / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "LORA"}))
    return folder


def config(model, **changes) -> RunConfig:
    return dataclasses.replace(RunConfig(command="run", task="humaneval", model=str(model), backend="vllm"), **changes)


def test_engine_arguments_of_a_full_checkpoint(tiny_checkpoint):
    kwargs = engine_kwargs(config(tiny_checkpoint, max_model_len=4096, dtype="bfloat16", tensor_parallel_size=2))
    assert kwargs == {
        "model": str(tiny_checkpoint),
        "tokenizer": str(tiny_checkpoint),
        "dtype": "bfloat16",
        "tensor_parallel_size": 2,
        "seed": Sampling.seed,
        "max_model_len": 4096,
    }
    defaults = engine_kwargs(config(tiny_checkpoint))
    assert defaults["dtype"] == "auto" and "max_model_len" not in defaults  # the model's own length
    assert "quantization" not in defaults and "enable_lora" not in defaults


def test_an_adapter_runs_as_its_base_with_lora_enabled(adapter, tiny_checkpoint):
    kwargs = engine_kwargs(config(adapter, quantization="awq", gpu_memory_utilization=0.5))
    assert kwargs["model"] == kwargs["tokenizer"] == str(tiny_checkpoint)
    assert kwargs["enable_lora"] is True and kwargs["max_lora_rank"] == 64  # rank 40 -> vLLM's next slot
    assert kwargs["quantization"] == "awq" and kwargs["gpu_memory_utilization"] == 0.5
    assert lora_kwargs(str(adapter), 3) == {"lora_name": "adapter3", "lora_int_id": 3, "lora_path": str(adapter)}
    assert [lora_slot(r) for r in (1, 4, 8, 9, 300, 512)] == [1, 8, 8, 16, 320, 512]


def test_sampling_arguments():
    sampled = sampling_kwargs(Sampling(temperature=0.8, top_p=0.9, top_k=40, max_new_tokens=77), ["\ndef"], 20, 5)
    assert sampled == {
        "n": 20,
        "temperature": 0.8,
        "top_p": 0.9,
        "top_k": 40,
        "repetition_penalty": 1.0,
        "max_tokens": 77,
        "stop": ["\ndef"],
        "include_stop_str_in_output": True,
        "seed": 5,
    }
    greedy = sampling_kwargs(Sampling(temperature=0, top_k=40), (), 1, 5)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["top_k"] == -1
    assert sampling_kwargs(Sampling(), (), 1, 5)["top_k"] == -1  # our 0 (off) is vLLM's -1


def test_each_request_has_its_own_seed():
    a, b = Request("HumanEval/0", "p", 0, 4), Request("HumanEval/1", "p", 0, 4)
    assert request_seed(7, a) == request_seed(7, a) != request_seed(7, b)
    assert request_seed(7, a) != request_seed(8, a) and request_seed(7, a, 1) != request_seed(7, a)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_without_vllm_the_backend_names_the_extra(tiny_checkpoint, tmp_path, capsys):
    argv = ["run", "--backend", "vllm", "--model", tiny_checkpoint, "--task", "humaneval", "--out", tmp_path / "r"]
    assert harness(*argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == "harness: error: --backend vllm needs vLLM, which is not installed: pip install 'code-harness[vllm]'"


def test_auto_is_hf_without_vllm_or_a_gpu(tiny_checkpoint):
    from harness.backends import choose, cuda_available

    expected = "vllm" if HAS_VLLM and cuda_available() else "hf"
    resolved = RunConfig(command="run", task="humaneval", model=str(tiny_checkpoint)).resolved()
    assert choose("auto") == resolved.backend == expected
    assert resolved.batch_size == (4096 if expected == "vllm" else 16)


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (pip install 'code-harness[vllm]'; needs a GPU)")
def test_the_arguments_are_accepted_by_vllms_own_classes(adapter):
    from vllm import EngineArgs, SamplingParams
    from vllm.lora.request import LoRARequest

    params = SamplingParams(**sampling_kwargs(Sampling(temperature=0.8, top_k=40), ["\ndef"], 20, 5))
    assert (params.n, params.temperature, params.top_k, params.seed, params.stop) == (20, 0.8, 40, 5, ["\ndef"])
    assert params.include_stop_str_in_output is True
    greedy = SamplingParams(**sampling_kwargs(Sampling(temperature=0), (), 1, 5))
    assert greedy.temperature == 0.0 and greedy.top_k in (-1, 0)  # newer vLLMs store "off" as 0
    request = LoRARequest(**lora_kwargs(str(adapter), 1))
    assert request.lora_int_id == 1 and request.lora_path == str(adapter)
    engine = EngineArgs(**engine_kwargs(config(adapter)))
    assert engine.enable_lora and engine.max_lora_rank == 64 and engine.model == engine.tokenizer
