"""Several checkpoints and tasks in one `harness run`: a fine-tuning folder of LoRA adapter
checkpoints evaluated with the base loaded once, one run directory per pair, one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import registry
from harness.records import SAMPLES
from harness.report import comparison_table
from harness.series import expand_models, short_names
from tasks.humaneval import HumanEval
from tests.helpers import harness, read_jsonl

GREEDY = ["--limit", "2", "--temperature", "0", "--max-new-tokens", "16"]


@pytest.fixture(scope="module")
def finetune_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fine-tuning output folder: checkpoint-20 and checkpoint-100, two LoRA adapters of the
    tiny checkpoint with different (non-zero) weights, so that each changes the outputs its own way."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("finetune")
    for seed, step in [(1, 20), (2, 100)]:
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
        lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(base, lora).save_pretrained(folder / f"checkpoint-{step}")
    (folder / "trainer_log.txt").write_text("not a checkpoint\n")
    return folder


@pytest.fixture
def base_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each model that AutoModelForCausalLM.from_pretrained loads, in order (the real loader runs)."""
    from transformers import AutoModelForCausalLM

    loads: list[str] = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, source, *args, **kwargs):
        loads.append(str(source))
        return real(cls, source, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    return loads


def test_adapter_checkpoints_share_one_base_and_match_separate_runs(
    finetune_dir, tiny_checkpoint, tmp_path, base_loads, capsys
):
    out = tmp_path / "series"
    assert harness("run", "--model", f"{finetune_dir}/checkpoint-*", "--task", "humaneval", "--out", out, *GREEDY) == 0
    assert base_loads == [str(tiny_checkpoint)], "the base model must be loaded once for both adapters"
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| checkpoint-")]
    assert [row.split("|")[1].strip() for row in rows] == ["checkpoint-20", "checkpoint-100"]  # step order
    assert all("| humaneval |" in row for row in rows) and "| pass@1 " in printed

    # Each swapped-in adapter generates exactly what it generates when loaded on its own.
    for step in (20, 100):
        alone = tmp_path / f"alone-{step}"
        assert (
            harness(
                "run", "--model", finetune_dir / f"checkpoint-{step}", "--task", "humaneval", "--out", alone, *GREEDY
            )
            == 0
        )
        series = out / f"checkpoint-{step}" / "humaneval"
        assert [r["raw"] for r in read_jsonl(series / SAMPLES)] == [r["raw"] for r in read_jsonl(alone / SAMPLES)]
        generation = json.loads((series / "config.json").read_text())["manifest"]["generation"]
        assert generation["adapter"] == str(finetune_dir / f"checkpoint-{step}")
        assert generation["base_model"] == str(tiny_checkpoint)
    raws = [[r["raw"] for r in read_jsonl(out / f"checkpoint-{s}" / "humaneval" / SAMPLES)] for s in (20, 100)]
    assert raws[0] != raws[1]


def test_a_finished_series_loads_no_model_and_prints_the_same_table(finetune_dir, tmp_path, base_loads, capsys):
    argv = ["run", "--model", finetune_dir / "checkpoint-100", finetune_dir / "checkpoint-20", "--task", "humaneval"]
    argv += ["--out", tmp_path / "series", *GREEDY]
    assert harness(*argv) == 0
    first = capsys.readouterr().out
    assert len(base_loads) == 1
    assert harness(*argv) == 0
    assert capsys.readouterr().out == first and len(base_loads) == 1
    # Models given one by one keep their order.
    assert first.index("| checkpoint-100") < first.index("| checkpoint-20")


class HumanEvalAgain(HumanEval):
    name = "humaneval-again"


def test_several_tasks_run_over_one_loaded_model(tiny_checkpoint, tmp_path, base_loads, capsys):
    registry.tasks.register("humaneval-again", HumanEvalAgain)
    try:
        argv = ["run", "--model", tiny_checkpoint, "--task", "humaneval", "--task", "humaneval-again"]
        assert harness(*argv, "--out", tmp_path / "runs", *GREEDY) == 0
    finally:
        registry.tasks.unregister("humaneval-again")
    assert base_loads == [str(tiny_checkpoint)]
    name = tiny_checkpoint.name
    for task in ("humaneval", "humaneval-again"):
        assert json.loads((tmp_path / "runs" / name / task / "metrics.json").read_text())["problems"] == 2
    table = capsys.readouterr().out
    assert f"| {name} | humaneval       |" in table and f"| {name} | humaneval-again |" in table


def test_glob_order_and_names(tmp_path):
    for step in (5, 100, 20):
        (tmp_path / "a" / f"checkpoint-{step}").mkdir(parents=True)
    (tmp_path / "a" / "checkpoint-final").mkdir()
    models = expand_models([f"{tmp_path}/a/checkpoint-*", f"{tmp_path}/a/checkpoint-5"])
    assert [Path(m).name for m in models] == ["checkpoint-5", "checkpoint-20", "checkpoint-100", "checkpoint-final"]
    names = short_names(["runs/a/checkpoint-5", "runs/b/checkpoint-5", "other"])
    assert names == {"runs/a/checkpoint-5": "a_checkpoint-5", "runs/b/checkpoint-5": "b_checkpoint-5", "other": "other"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "{tmp}/nothing-*"], "no checkpoint folder matches"),
        (["--model", "{ft}", "--task", "humaneval"], "for its checkpoints use --model '{ft}/checkpoint-*'"),
        (["--model", "a", "--task", "leetcode", "--data", "x.jsonl"], "--data is one task's dataset"),
    ],
)
def test_bad_series_input_is_one_line(finetune_dir, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, ft=finetune_dir) for a in argv]
    assert harness("run", "--task", "humaneval", *argv, "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message.format(ft=finetune_dir) in err[-1] and "Traceback" not in "\n".join(err)


def test_comparison_table_marks_an_incomplete_run_and_keeps_reasons_below():
    record = {"problems": 3, "n": 2, "metrics": {"pass@1": 0.5, "bleu": 12.345, "codebleu_ngram": 0.1}}
    record["unavailable"] = {"bertscore": "needs a local model"}
    table = comparison_table([("ckpt-1", "humaneval", record), ("ckpt-2", "humaneval", None)]).splitlines()
    assert table[0] == "| model  | task      | problems   | n | pass@1 | bleu  |"
    assert table[2] == "| ckpt-1 | humaneval | 3          | 2 | 0.5000 | 12.35 |"
    assert table[3] == "| ckpt-2 | humaneval | incomplete | - | -      | -     |"
    assert table[4] == "bertscore: unavailable: needs a local model"
