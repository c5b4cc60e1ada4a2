"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing computed lost."""

from __future__ import annotations

import json
import os

import pytest

from harness.records import RESULTS, SAMPLES
from tests.helpers import harness, harness_subprocess, write_jsonl


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_unknown_task_suggests_the_closest_name(capsys, tmp_path):
    assert harness("evaluate", "--task", "humanevl", "--samples", tmp_path / "s.jsonl") == 2
    assert "unknown task 'humanevl'; did you mean 'humaneval'?" in error_line(capsys)


def test_missing_checkpoint_path(capsys, tmp_path):
    assert harness("run", "--model", tmp_path / "nowhere", "--task", "humaneval", "--out", tmp_path / "run") == 2
    assert "checkpoint not found" in error_line(capsys)


def test_folder_that_is_no_checkpoint(capsys, tmp_path):
    assert harness("run", "--model", tmp_path, "--task", "humaneval", "--out", tmp_path / "run") == 2
    assert "neither a checkpoint" in error_line(capsys)


def test_hub_id_fails_with_a_clear_message_when_the_hub_is_unreachable(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # same failure as here, without the client's retries
    proc = harness_subprocess(
        "run", "--model", "someone/no-such-model", "--task", "humaneval", "--out", tmp_path / "run", env=env
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "cannot load 'someone/no-such-model'" in proc.stderr.strip().splitlines()[-1]


def test_malformed_samples_line_names_file_and_line(capsys, tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n{"task_id": oops}\n')
    assert harness("evaluate", "--task", "humaneval", "--samples", samples, "--out", tmp_path / "run") == 2
    assert f"{samples}:2: not valid JSON" in error_line(capsys)


def test_sample_row_without_completion(capsys, tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "text": "x"}])
    assert harness("evaluate", "--task", "humaneval", "--samples", samples, "--out", tmp_path / "run") == 2
    assert f'{samples}:1: a row needs a string "completion"' in error_line(capsys)


def test_unknown_task_id_in_samples_is_named(capsys, tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/999", "completion": "x"}])
    assert harness("evaluate", "--task", "humaneval", "--samples", samples, "--out", tmp_path / "run") == 2
    assert "unknown task_id 'HumanEval/999'" in error_line(capsys)


def test_unknown_task_id_in_task_ids(capsys, tmp_path, tiny_checkpoint):
    assert (
        harness(
            "run",
            "--model",
            tiny_checkpoint,
            "--task",
            "humaneval",
            "--task-ids",
            "HumanEval/1,Human/2",
            "--out",
            tmp_path / "run",
        )
        == 2
    )
    assert "unknown task_id 'Human/2'" in error_line(capsys)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--k", "1,10,100", "--n", "10"], "pass@100 needs at least 100 samples per problem, but --n is 10"),
        (["--k", "1,10", "--temperature", "0"], "greedy decoding"),
        (["--n", "3", "--temperature", "0"], "use --n 1"),
        (["--k", "1,x"], "--k takes comma-separated integers"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    ],
)
def test_bad_generation_settings(capsys, tmp_path, flags, message):
    assert harness("run", "--model", "unused", "--task", "humaneval", "--out", tmp_path / "run", *flags) == 2
    assert message in error_line(capsys)


def test_k_larger_than_the_samples_in_a_file(capsys, tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "x"}] * 3)
    assert harness("evaluate", "--task", "humaneval", "--samples", samples, "--k", "1,5", "--out", tmp_path / "r") == 2
    assert "pass@5 needs 5 samples per problem, but" in error_line(capsys)


def test_argparse_errors_are_one_line_with_exit_2(tmp_path):
    proc = harness_subprocess("run", "--task", "humaneval", "--n", "many")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "invalid int value" in proc.stderr


def test_out_dir_with_other_settings_is_refused_and_left_intact(capsys, tmp_path):
    good = [{"task_id": "HumanEval/2", "completion": "    return number % 1.0\n"}]
    samples = write_jsonl(tmp_path / "a.jsonl", good)
    out = tmp_path / "run"
    assert harness("evaluate", "--task", "humaneval", "--samples", samples, "--out", out) == 0
    before = {name: (out / name).read_bytes() for name in (SAMPLES, RESULTS, "config.json", "metrics.json")}
    other = write_jsonl(tmp_path / "b.jsonl", good * 2)
    capsys.readouterr()
    assert harness("evaluate", "--task", "humaneval", "--samples", other, "--out", out) == 2
    assert "holds a run with other settings" in error_line(capsys)
    assert before == {name: (out / name).read_bytes() for name in before}
    assert json.loads(before["metrics.json"])["metrics"]["pass@1"] == 1.0


def test_unknown_device(capsys, tmp_path, tiny_checkpoint):
    assert (
        harness(
            "run", "--model", tiny_checkpoint, "--task", "humaneval", "--device", "warp9", "--out", tmp_path / "run"
        )
        == 2
    )
    assert "--device 'warp9' is no device torch knows" in error_line(capsys)
