"""`harness run` and `harness evaluate` end to end: a real tiny checkpoint, the real sandbox."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness import registry
from harness.metrics import similarity
from harness.metrics.bertscore import NO_MODEL
from harness.records import NOT_EXECUTED, RESULTS, SAMPLES
from sandbox.base import STATUSES
from tasks.extract import trim_at_stop
from tasks.humaneval import HumanEval
from tests.helpers import harness, read_jsonl, write_jsonl

FAST = ["--max-new-tokens", "24", "--temperature", "0.8"]


def run_tiny(model: Path, out: Path, *flags: object) -> dict:
    assert harness("run", "--model", model, "--task", "humaneval", "--out", out, *FAST, *flags) == 0
    return json.loads((out / "metrics.json").read_text())


def by_key(rows: list[dict]) -> dict[tuple[str, int], dict]:
    keyed = {(r["task_id"], r["completion_id"]): r for r in rows}
    assert len(keyed) == len(rows), "duplicate rows"
    return keyed


def test_run_writes_the_run_directory_contract(tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    metrics = run_tiny(tiny_checkpoint, out, "--limit", "3", "--n", "2", "--k", "1,2")
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["n"] == 2 and config["settings"]["ks"] == [1, 2]
    manifest = config["manifest"]
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"  # --device auto
    assert manifest["generation"]["backend"] == "hf" and manifest["generation"]["device"] == expected_device
    assert manifest["packages"]["torch"] and len(manifest["dataset_sha256"]) == 64
    assert len(manifest["prompt_template_sha256"]) == 64 and manifest["chat"] is False

    samples = read_jsonl(out / SAMPLES)
    assert sorted(by_key(samples)) == [(f"HumanEval/{i}", j) for i in range(3) for j in range(2)]
    problems = {p.task_id: p for p in HumanEval().load()}
    for row in samples:
        assert row["prompt"] == problems[row["task_id"]].prompt
        assert row["completion"] == trim_at_stop(row["raw"], HumanEval.stop)
        assert row["finish_reason"] in {"stop", "eos", "length"}

    results = read_jsonl(out / RESULTS)
    assert by_key(results).keys() == by_key(samples).keys()
    assert all(r["status"] in STATUSES and r["passed"] == (r["status"] == "passed") for r in results)
    assert all(0 <= r["bleu"] <= 100 for r in results)
    assert set(metrics["metrics"]) == {"pass@1", "pass@2", *similarity.METRICS}
    assert set(metrics["unavailable"]) == {"bertscore"}
    assert metrics["per_problem"]["HumanEval/0"]["n"] == 2
    assert sum(metrics["status_counts"].values()) == 6


def test_same_seed_same_samples_other_seed_other_samples(tiny_checkpoint, tmp_path):
    raws = {}
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        run_tiny(tiny_checkpoint, tmp_path / name, "--limit", "2", "--n", "3", "--k", "1", "--seed", seed)
        raws[name] = [r["raw"] for r in read_jsonl(tmp_path / name / SAMPLES)]
    assert raws["a"] == raws["b"]
    assert raws["a"] != raws["c"]


def test_lora_adapter_is_loaded_over_its_base(tiny_checkpoint, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    # Non-zero B matrices, so that the adapter really changes the model's outputs.
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = tmp_path / "adapter"
    get_peft_model(base, lora).save_pretrained(adapter)
    assert (adapter / "adapter_config.json").exists() and not (adapter / "config.json").exists()

    greedy = ["--limit", "2", "--temperature", "0", "--max-new-tokens", "24"]
    assert harness("run", "--model", adapter, "--task", "humaneval", "--out", tmp_path / "lora", *greedy) == 0
    assert harness("run", "--model", tiny_checkpoint, "--task", "humaneval", "--out", tmp_path / "base", *greedy) == 0
    manifest = json.loads((tmp_path / "lora" / "config.json").read_text())["manifest"]
    assert manifest["generation"]["base_model"] == str(tiny_checkpoint)
    lora_raw = [r["raw"] for r in read_jsonl(tmp_path / "lora" / SAMPLES)]
    base_raw = [r["raw"] for r in read_jsonl(tmp_path / "base" / SAMPLES)]
    assert len(lora_raw) == 2 and lora_raw != base_raw


def test_chat_template_is_detected_and_can_be_turned_off(tiny_chat_checkpoint, tmp_path):
    for out, flag, chat in [("auto", [], True), ("off", ["--no-chat"], False)]:
        assert (
            harness(
                "run",
                "--model",
                tiny_chat_checkpoint,
                "--task",
                "humaneval",
                "--limit",
                "1",
                "--temperature",
                "0",
                "--max-new-tokens",
                "16",
                "--out",
                tmp_path / out,
                *flag,
            )
            == 0
        )
        assert json.loads((tmp_path / out / "config.json").read_text())["manifest"]["chat"] is chat
        row = read_jsonl(tmp_path / out / SAMPLES)[0]
        assert ("Reply with the whole function" in row["prompt"]) is chat


def canonical(problems, wrong=False) -> list[dict]:
    """Reference solutions, or (wrong=True) bodies that return None, which every problem rejects."""
    return [{"task_id": p.task_id, "completion": "    return None\n" if wrong else p.reference} for p in problems]


def test_canonical_solutions_all_pass(tmp_path, capsys):
    samples = write_jsonl(tmp_path / "canonical.jsonl", canonical(HumanEval().load()))
    assert harness("evaluate", "--task", "humaneval", "--samples", samples, "--out", tmp_path / "run") == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["problems"] == 164 and metrics["metrics"]["pass@1"] == 1.0
    assert metrics["metrics"]["bleu"] == pytest.approx(100) and metrics["metrics"]["exact_match"] == 1.0
    assert metrics["status_counts"] == {"passed": 164}
    assert "| pass@1" in capsys.readouterr().out


def test_evalplus_solutions_and_wrong_solutions(tmp_path):
    problems = HumanEval().load()[:6]
    rows = [{"task_id": p.task_id, "solution": p.prompt + p.reference} for p in problems[:3]]
    rows += canonical(problems[3:], wrong=True)
    rows += [{"task_id": problems[0].task_id, "solution": "def nope(:\n"}]
    samples = write_jsonl(tmp_path / "mixed.jsonl", rows)
    assert harness("evaluate", "--task", "humaneval", "--samples", samples, "--out", tmp_path / "run") == 0
    results = by_key(read_jsonl(tmp_path / "run" / RESULTS))
    assert [results[(p.task_id, 0)]["passed"] for p in problems] == [True] * 3 + [False] * 3
    assert results[(problems[0].task_id, 1)]["status"] == "syntax_error"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Problem 0 has two samples, so only pass@1 is defined over all problems.
    assert [m for m in metrics["metrics"] if m.startswith("pass@")] == ["pass@1"]
    assert metrics["metrics"]["pass@1"] == pytest.approx((0.5 + 1 + 1) / 6)


def cli(*argv: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *map(str, argv)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def kill_when(path: Path, rows: int, proc: subprocess.Popen, deadline_s: float = 120) -> int:
    """SIGKILL `proc` as soon as `path` has at least `rows` lines; return the lines then."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= rows:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return path.read_bytes().count(b"\n")
        time.sleep(0.01)
    pytest.fail("the run ended before it could be killed")


def test_generation_killed_with_sigkill_resumes_to_the_same_result(tiny_checkpoint, tmp_path):
    flags = [
        "run",
        "--model",
        tiny_checkpoint,
        "--task",
        "humaneval",
        "--limit",
        "6",
        "--n",
        "4",
        "--k",
        "1,4",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "64",
        "--temperature",
        "0.8",
    ]
    assert harness(*flags, "--out", tmp_path / "whole") == 0
    killed_at = kill_when(tmp_path / "resumed" / SAMPLES, 3, cli(*flags, "--out", tmp_path / "resumed"))
    assert killed_at < 24
    assert harness(*flags, "--out", tmp_path / "resumed") == 0

    whole, resumed = (by_key(read_jsonl(tmp_path / d / SAMPLES)) for d in ("whole", "resumed"))
    assert resumed == whole
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "resumed")]
    assert metrics[0]["metrics"] == metrics[1]["metrics"]
    assert metrics[0]["per_problem"] == metrics[1]["per_problem"]


def test_execution_killed_with_sigkill_resumes_without_duplicates(tmp_path):
    problems = HumanEval().load()
    samples = write_jsonl(tmp_path / "s.jsonl", canonical(problems) + canonical(problems[:40], wrong=True))
    out = tmp_path / "run"
    killed_at = kill_when(out / RESULTS, 20, cli("evaluate", "--task", "humaneval", "--samples", samples, "--out", out))
    assert killed_at < 204
    with open(out / RESULTS, "a") as f:
        f.write('{"task_id": "HumanEval/1", "compl')  # a torn last line, as a kill mid-write leaves
    assert harness("evaluate", "--task", "humaneval", "--samples", samples, "--out", out) == 0
    results = by_key(read_jsonl(out / RESULTS))
    assert len(results) == 204
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status_counts"]["passed"] == 164
    assert metrics["per_problem"]["HumanEval/0"] == {"n": 2, "correct": 1}


# --- LeetCode, CodeAlpaca and CodeSearchNet on the fixture files in tests/data -----------------

DATA = Path(__file__).resolve().parents[1] / "data"
TASKS = {"leetcode": "leetcode.jsonl", "codealpaca": "codealpaca.jsonl", "codesearchnet": "codesearchnet.jsonl"}
LEETCODE_NOT_EXECUTED = {
    "LeetCode/5": "the statement accepts several answers",
    "LeetCode/49": "the reference solution fails the problem's tests (failed: AssertionError: example 1)",
    "LeetCode/146": "a class to design: its examples are sequences of method calls (not converted yet)",
    "LeetCode/206": "takes or returns a linked list or a tree (not converted yet)",
}


def references(task: str, damage: bool = False) -> list[dict]:
    """Each problem's reference as a sample; damage=True: in turns the reference itself, the
    reference with a comment added (still correct) and the reference without its last line."""
    problems = registry.tasks.get(task)(data=str(DATA / TASKS[task])).load()
    rows = []
    for index, problem in enumerate(problems):
        text = problem.reference
        if damage and index % 3 == 1:
            text = text + "\n# the end\n"
        elif damage and index % 3 == 2:
            text = "\n".join(text.rstrip().splitlines()[:-1]) + "\n"
        rows.append({"task_id": problem.task_id, "solution" if task != "codealpaca" else "completion": text})
    return rows


def evaluate_fixture(task: str, rows: list[dict], out: Path) -> dict:
    samples = write_jsonl(out.with_suffix(".jsonl"), rows)
    assert harness("evaluate", "--task", task, "--data", DATA / TASKS[task], "--samples", samples, "--out", out) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("task", sorted(TASKS))
def test_references_against_themselves_score_the_maximum(task, tmp_path, capsys):
    metrics = evaluate_fixture(task, references(task), tmp_path / "run")
    values = metrics["metrics"]
    assert values["bleu"] == pytest.approx(100) and values["codebleu"] == pytest.approx(1.0)
    assert values["rouge_l"] == values["exact_match"] == 1.0
    assert metrics["unavailable"] == {"bertscore": NO_MODEL}
    results = read_jsonl(tmp_path / "run" / RESULTS)
    assert len(results) == metrics["problems"] and all(r["bleu"] == 100 for r in results)
    if task != "leetcode":
        assert "pass@1" not in values and metrics["executed_problems"] == 0
        assert {r["status"] for r in results} == {NOT_EXECUTED} and all("passed" not in r for r in results)
        return
    assert values["pass@1"] == 1.0 and metrics["executed_problems"] == 7 and metrics["problems"] == 11
    assert metrics["not_executed"] == LEETCODE_NOT_EXECUTED
    assert metrics["status_counts"] == {"passed": 7, NOT_EXECUTED: 4}
    groups = metrics["breakdown"]["difficulty"]
    assert {g: (v["problems"], v["executed_problems"]) for g, v in groups.items()} == {
        "Easy": (3, 2),
        "Medium": (6, 3),
        "Hard": (2, 2),
    }
    assert all(v["metrics"]["pass@1"] == 1.0 and v["metrics"]["bleu"] == pytest.approx(100) for v in groups.values())
    printed = capsys.readouterr().out
    assert "| executed against tests" in printed and "| difficulty | problems | executed | pass@1" in printed


@pytest.mark.parametrize("task", sorted(TASKS))
def test_imperfect_predictions_score_strictly_between(task, tmp_path):
    values = evaluate_fixture(task, references(task, damage=True), tmp_path / "run")["metrics"]
    assert 0 < values["bleu"] < 100
    for name in ("codebleu", "rouge_l", "exact_match") + (("pass@1",) if task == "leetcode" else ()):
        assert 0 < values[name] < 1, name


def test_a_killed_leetcode_evaluation_resumes_without_duplicates(tmp_path):
    whole = evaluate_fixture("leetcode", references("leetcode", damage=True), tmp_path / "whole")
    out = tmp_path / "resumed"
    evaluate_fixture("leetcode", references("leetcode", damage=True), out)
    kept = (out / RESULTS).read_text().splitlines(keepends=True)[:5]  # both kinds of row, as a kill leaves them
    (out / RESULTS).write_text("".join(kept) + '{"task_id": "LeetCode/1", "compl')
    (out / "metrics.json").unlink()
    resumed = evaluate_fixture("leetcode", references("leetcode", damage=True), out)
    assert len(by_key(read_jsonl(out / RESULTS))) == 11
    assert resumed["metrics"] == whole["metrics"] and resumed["breakdown"] == whole["breakdown"]


@pytest.mark.parametrize(
    ("task", "flags", "problems"),
    [
        ("leetcode", ["--task-ids", "LeetCode/1,LeetCode/146,LeetCode/4"], 3),
        ("codealpaca", ["--limit", "3"], 3),
        ("codesearchnet", ["--limit", "2", "--n", "2", "--temperature", "0.8", "--k", "1,2"], 2),
    ],
)
def test_run_with_the_tiny_checkpoint_on_each_task(tiny_checkpoint, tmp_path, task, flags, problems):
    out = tmp_path / "run"
    argv = ["run", "--model", tiny_checkpoint, "--task", task, "--data", DATA / TASKS[task], "--out", out]
    assert harness(*argv, "--max-new-tokens", "16", "--temperature", "0", *flags) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    samples, results = read_jsonl(out / SAMPLES), read_jsonl(out / RESULTS)
    assert metrics["problems"] == problems and by_key(results).keys() == by_key(samples).keys()
    assert all(0 <= r["bleu"] <= 100 for r in results)
    assert set(similarity.METRICS) <= set(metrics["metrics"])
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["data"] == str(DATA / TASKS[task]) and config["settings"]["split"] is None
    assert config["manifest"]["data"]["sha256"] == hashlib.sha256((DATA / TASKS[task]).read_bytes()).hexdigest()
    if task == "leetcode":  # LeetCode/146 is a class design: scored, listed, not executed
        assert metrics["executed_problems"] == 2 and list(metrics["not_executed"]) == ["LeetCode/146"]
        assert "pass@1" in metrics["metrics"] and set(metrics["breakdown"]["difficulty"]) == {"Easy", "Medium", "Hard"}
