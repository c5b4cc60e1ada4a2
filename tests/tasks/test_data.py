"""Loading a task's data: every local format gives the same problems; bad data is one line, exit 2."""

from __future__ import annotations

import json
import os

import pytest

from harness.errors import UsageError
from tasks.codealpaca import CodeAlpaca
from tasks.data import data_sha256
from tasks.leetcode import LeetCode
from tests.helpers import harness, harness_subprocess, read_jsonl, write_jsonl
from tests.tasks.conftest import DATA

LEETCODE = DATA / "leetcode.jsonl"


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.fixture(scope="module")
def leetcode_rows() -> list[dict]:
    return read_jsonl(LEETCODE)


@pytest.mark.parametrize("kind", ["parquet", "csv", "json", "jsonl.gz", "saved"])
def test_every_local_format_gives_the_same_problems(kind, leetcode_rows, tmp_path):
    import datasets

    table = datasets.Dataset.from_list(leetcode_rows)
    path = tmp_path / f"leetcode.{kind}"
    if kind == "parquet":
        table.to_parquet(path)
    elif kind == "csv":
        table.to_csv(path, index=False)
    elif kind == "json":
        path.write_text(json.dumps(leetcode_rows))  # one JSON array
    elif kind == "jsonl.gz":
        import gzip

        path.write_bytes(gzip.compress(LEETCODE.read_bytes()))
    else:
        datasets.DatasetDict({"train": table}).save_to_disk(path)
    expected = LeetCode(data=str(LEETCODE)).load()
    assert LeetCode(data=str(path)).load() == expected


def test_a_saved_dataset_dicts_split_is_chosen_by_split(tmp_path):
    import datasets

    rows = read_jsonl(DATA / "codealpaca.jsonl")
    saved = tmp_path / "codealpaca"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:5]), "test": datasets.Dataset.from_list(rows[5:])}
    ).save_to_disk(saved)
    assert len(CodeAlpaca(data=str(saved)).load()) == 3  # the task's default split: test
    train = CodeAlpaca(data=str(saved), split="train").load()
    assert [p.reference for p in train] == [r["completion"] for r in rows[:5]]
    with pytest.raises(UsageError, match=f"{saved} has no split 'validation' \\(it has: train, test\\)"):
        CodeAlpaca(data=str(saved), split="validation").load()


def test_data_sha256_of_a_file_and_of_a_folder(tmp_path):
    import hashlib

    assert data_sha256(str(LEETCODE)) == hashlib.sha256(LEETCODE.read_bytes()).hexdigest()
    (tmp_path / "a").write_text("1")
    before = data_sha256(str(tmp_path))
    (tmp_path / "a").write_text("2")
    assert data_sha256(str(tmp_path)) != before


def evaluate(task: str, data, tmp_path, *flags) -> int:
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "CodeAlpaca/0", "completion": "x"}])
    return harness("evaluate", "--task", task, "--data", data, "--samples", samples, "--out", tmp_path / "run", *flags)


def test_a_missing_column_names_the_file_and_the_column(capsys, leetcode_rows, tmp_path):
    data = write_jsonl(
        tmp_path / "no_python.jsonl", [{k: v for k, v in r.items() if k != "python"} for r in leetcode_rows]
    )
    assert evaluate("leetcode", data, tmp_path) == 2
    assert f"{data}: missing column 'python'" in error_line(capsys)


def test_an_empty_file(capsys, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    assert evaluate("codealpaca", data, tmp_path) == 2
    assert error_line(capsys) == f"harness: error: {data} is empty"


def test_a_file_with_no_rows(capsys, tmp_path):
    import datasets

    data = tmp_path / "none.parquet"
    datasets.Dataset.from_dict({"prompt": [], "completion": []}).to_parquet(data)
    assert evaluate("codealpaca", data, tmp_path) == 2
    assert f"{data} holds no rows" in error_line(capsys)


def test_split_does_not_apply_to_a_single_file(capsys, tmp_path):
    assert evaluate("codealpaca", DATA / "codealpaca.jsonl", tmp_path, "--split", "test") == 2
    assert "a data file holds one split" in error_line(capsys)


def test_an_unknown_split_of_humaneval(capsys, tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "x"}])
    assert harness("evaluate", "--task", "humaneval", "--split", "train", "--samples", samples) == 2
    assert "HumanEval has one split, 'test', not 'train'" in error_line(capsys)


def test_missing_and_unknown_files(capsys, tmp_path):
    assert evaluate("codealpaca", tmp_path / "nowhere.jsonl", tmp_path) == 2
    assert f"cannot read --data {tmp_path / 'nowhere.jsonl'}: no such file or folder" in error_line(capsys)
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    assert evaluate("codealpaca", odd, tmp_path) == 2
    assert f"{odd}: unknown data format" in error_line(capsys)


def test_the_hub_unreachable_is_one_line_with_exit_2(tmp_path):
    """Without --data the task loads its dataset by hub name, which fails here: clearly."""
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "CodeAlpaca/0", "completion": "x"}])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the same failure as without a network, without retries
    proc = harness_subprocess(
        "evaluate", "--task", "codealpaca", "--samples", samples, "--out", tmp_path / "r", env=env
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot load 'HuggingFaceH4/CodeAlpaca_20K' from the Hugging Face hub" in last and "--data" in last
