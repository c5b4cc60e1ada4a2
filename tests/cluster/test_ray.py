"""`--executor ray` and `--data-parallel` on a real two-node Ray cluster, on loopback only.

The cluster runs in its own network, PID and mount namespaces (tests/cluster/loopback_cluster.py),
started once by tests/cluster/scenarios.py, which runs every scenario against it and writes a
report; each test below checks one scenario's part of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster.execution import IN_FLIGHT_PER_ACTOR
from harness.config import RunConfig
from tests.cluster.loopback_cluster import namespace_command
from tests.helpers import harness, write_jsonl

SCENARIOS = Path(__file__).with_name("scenarios.py")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict:
    work = tmp_path_factory.mktemp("ray")
    proc = subprocess.run(
        namespace_command(SCENARIOS, work, tiny_checkpoint), capture_output=True, text=True, timeout=1200
    )
    path = work / "report.json"
    assert path.exists(), f"the scenarios did not run (exit {proc.returncode}):\n{proc.stderr[-5000:]}"
    return json.loads(path.read_text())


def scenario(report: dict, name: str) -> dict:
    part = report.get(name)
    assert part is not None, f"scenario {name} did not run"
    assert "error" not in part, part.get("error")
    return part


def keyed(results: list[dict]) -> dict[tuple[str, int], tuple]:
    """(task_id, completion_id) -> what decides the metrics; a duplicate row fails the test."""
    keys = [(row["task_id"], row["completion_id"]) for row in results]
    assert len(keys) == len(set(keys)), "duplicate results rows"
    return {
        (row["task_id"], row["completion_id"]): (row["status"], row.get("passed"), row["detail"]) for row in results
    }


@pytest.mark.slow
def test_canonical_solutions_pass_through_the_ray_executor(report):
    part = scenario(report, "canonical")
    assert part["returncode"] == 0, part["stderr"]
    assert part["metrics"]["metrics"]["pass@1"] == 1.0
    assert part["metrics"]["executed_problems"] == 20
    cluster = part["config"]["manifest"]["cluster"]
    assert cluster["executor"] == "ray" and cluster["nodes"] == 2 and cluster["cpus"] == 2
    assert cluster["gpus"] == 0 and cluster["ray"]


@pytest.mark.slow
def test_ray_executor_results_equal_the_local_executors(report):
    part = scenario(report, "mixed")
    for executor in ("local", "ray"):
        assert part[executor]["returncode"] == 0, part[executor]["stderr"]
    local, ray = keyed(part["local"]["results"]), keyed(part["ray"]["results"])
    assert len(local) == 48
    assert ray == local
    assert {status for status, _, _ in ray.values()} >= {"passed", "failed", "error", "syntax_error"}


@pytest.mark.slow
def test_killing_an_actor_mid_run_loses_and_duplicates_nothing(report):
    part = scenario(report, "node_failure")
    assert part["killed"], "no sandbox actor was killed"
    assert part["killed"]["results_before"] < part["samples"], "the kill came after the run"
    assert part["returncode"] == 0
    results = keyed(part["results"])
    assert len(results) == part["samples"]
    assert not [v for v in results.values() if v[0] == "sandbox_error"]
    # Even ids are the canonical solutions (behind a sleep), odd ids return None.
    assert all(passed == (key[1] == 0) for key, (_, passed, _) in results.items())


@pytest.mark.slow
def test_a_program_that_kills_its_actors_is_a_sandbox_error_and_the_rest_is_judged(report):
    part = scenario(report, "poison")
    indices = [index for index, _ in part["verdicts"]]
    assert sorted(indices) == list(range(part["programs"])), "every program exactly once"
    statuses = dict(part["verdicts"])
    assert statuses.pop(5) == "sandbox_error"
    number = {p: p if p < 5 else p - 1 for p in range(41) if p != 5}  # program p asserts number[p] % 7 != 3
    expected = {p: "failed" if n % 7 == 3 else "passed" for p, n in number.items()}
    # A program that shared the poisoned program's last shard, or whose verdict was in flight when
    # the actor died, can be given up with it (sandbox_error: retried by a re-run); every other
    # program gets its own verdict, and no verdict is wrong.
    given_up = [p for p, status in statuses.items() if status == "sandbox_error"]
    assert len(given_up) <= 2 and all(abs(p - 5) <= 2 for p in given_up), given_up
    assert {p: s for p, s in statuses.items() if p not in given_up} == {
        p: s for p, s in expected.items() if p not in given_up
    }
    stats = part["stats"]
    # At least MAX_ATTEMPTS deaths (3), then the program is given up; a death blamed on a neighbour's
    # shard (its verdict was in flight) does not count against the poisoned one, so a few more.
    assert 3 <= stats["actors_lost"] <= 10, stats
    # Backpressure: a bounded number of shards in flight (dead actors' shards count until they fail).
    assert stats["peak_in_flight"] <= IN_FLIGHT_PER_ACTOR * (part["nodes"] + stats["actors_lost"])
    assert stats["shards"] > stats["peak_in_flight"]
    assert part["again"] == [0, 1, 2, 3]


@pytest.mark.slow
def test_data_parallel_generation_equals_a_single_replica(report):
    part = scenario(report, "data_parallel")
    single, replicas = part["single"], part["replicas"]
    assert single["returncode"] == 0, single["stderr"]
    assert replicas["returncode"] == 0, replicas["stderr"]
    assert len(single["samples"]) == 12
    assert replicas["samples"] == single["samples"]
    manifest = replicas["config"]["manifest"]
    assert manifest["generation"]["data_parallel"] == 2
    assert manifest["cluster"]["nodes"] == 2 and manifest["cluster"]["data_parallel"] == 2
    assert single["config"]["manifest"]["cluster"] is None
    assert replicas["config"]["settings"] == single["config"]["settings"]


# --- no cluster needed ------------------------------------------------------------------------


def test_executor_and_data_parallel_are_incidental_to_the_results():
    local = RunConfig(command="evaluate", task="humaneval")
    ray = RunConfig(command="evaluate", task="humaneval", executor="ray", ray_address="10.0.0.1:6379", data_parallel=3)
    assert ray.settings() == local.settings()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--executor", "slurm"], "--executor takes local or ray"),
        (["--ray-address", "127.0.0.1:6379"], "--ray-address applies with --executor ray"),
        (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    ],
)
def test_bad_cluster_flags_are_one_line_and_exit_2(tmp_path, capsys, flags, message):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/2", "completion": "    return 0\n"}])
    code = harness("evaluate", "--task", "humaneval", "--samples", samples, "--out", tmp_path / "r", *flags)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_data_parallel_below_one_is_refused(tmp_path, capsys):
    code = harness("run", "--model", tmp_path, "--task", "humaneval", "--data-parallel", "0", "--out", tmp_path / "r")
    assert code == 2
    assert "--data-parallel must be at least 1" in capsys.readouterr().err


def test_without_ray_the_executor_names_the_extra(tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/2", "completion": "    return 0\n"}])
    argv = ["evaluate", "--task", "humaneval", "--samples", str(samples), "--executor", "ray"]
    script = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed: find_spec gives None\n"
        "from harness.cli import main\n"
        f"sys.exit(main({argv + ['--out', str(tmp_path / 'r')]!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "harness: error: --executor ray needs Ray, which is not installed: pip install 'code-harness[ray]'"
    ]
    assert not (tmp_path / "r").exists()
