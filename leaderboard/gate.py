"""The CI regression gate: is the current run's pass@k worse than the baseline's, beyond chance?

The test is paired over problems. For each problem present in both runs, d = pass@k(current) -
pass@k(baseline) (each problem's unbiased pass@k from its n samples and c correct; with n = 1 this
is 0 or 1). The change is the mean of d, and its interval a percentile bootstrap over problems:
2000 resamples of the problems with replacement, from `random.Random(0)`, so it is deterministic.
The interval is two-sided at 1 - alpha. The gate fails (exit 1) when the drop, -mean(d), exceeds
--max-drop *and* the whole interval lies below 0 (the drop is significant at alpha); otherwise it
passes (exit 0). Pairing removes the spread of problem difficulty, which unpaired means keep, so a
few problems lost out of many is found where a comparison of two means would miss it.

`--max-changed N` adds an exact check for deterministic reference runs (the project's own CI): it
also fails when more than N problems changed their outcome in either direction (correct count or
verdict statuses), since there any change, a false pass as much as a false fail, is a harness bug.

A baseline is a run directory or the small JSON that `harness gate --save-baseline RUN FILE`
writes (per-problem counts and statuses, plus the settings that make two runs comparable).
Bad input (missing files, another task, another problem set, incomparable settings) is a
UsageError: one line, exit 2.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness.errors import UsageError
from leaderboard.runs import BadRun, Run, read_run
from leaderboard.stats import RESAMPLES, SEED, bootstrap_mean, per_problem_pass_at_k

FORMAT = "harness-gate-baseline/1"
# Sampling settings that change what pass@k measures: two `run`s must agree on them (the seed may differ).
SAMPLING = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")


@dataclass(frozen=True)
class Snapshot:
    """What the gate compares: one run's per-problem outcome and the settings that qualify it."""

    label: str  # where it came from, for the report
    task: str
    comparable: dict[str, Any]  # split, dataset hash, and (for `run`) sampling and prompt settings
    problems: dict[str, dict[str, Any]]  # task_id -> {"n", "correct", "statuses": {status: count}}


@dataclass(frozen=True)
class Outcome:
    metric: str
    before: float
    after: float
    change: float
    interval: tuple[float, float]
    problems: int
    newly_failed: list[str]
    newly_solved: list[str]
    changed: list[str]  # problems whose correct count or statuses differ
    regression: bool  # a significant drop beyond --max-drop
    too_many_changed: bool  # more than --max-changed problems changed

    @property
    def failed(self) -> bool:
        return self.regression or self.too_many_changed


def snapshot_of_run(run: Run, label: str | None = None) -> Snapshot:
    settings = run.settings
    comparable: dict[str, Any] = {
        "split": settings.get("split"),
        "dataset_sha256": run.manifest.get("dataset_sha256"),
    }
    if settings.get("command") == "run":
        sampling = settings.get("sampling") or {}
        comparable["sampling"] = {name: sampling.get(name) for name in SAMPLING}
        comparable["chat"] = run.manifest.get("chat")
        comparable["prompt_template_sha256"] = run.manifest.get("prompt_template_sha256")
    problems = {
        task_id: {"n": c["n"], "correct": c["correct"], "statuses": dict(sorted(run.statuses[task_id].items()))}
        for task_id, c in run.per_problem.items()
        if "correct" in c
    }
    return Snapshot(label or str(run.path), run.task, comparable, problems)


def load_snapshot(path: str | Path) -> Snapshot:
    """A baseline or current run: a run directory, or a JSON file from --save-baseline."""
    path = Path(path)
    if path.is_dir():
        try:
            return snapshot_of_run(read_run(path))
        except BadRun as exc:
            raise UsageError(f"{path}: {exc}") from None
    if not path.exists():
        raise UsageError(f"{path}: no such run directory or baseline file")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a baseline JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: not a baseline written by `harness gate --save-baseline` (format {FORMAT})")
    problems = data.get("problems")
    if (
        not isinstance(data.get("task"), str)
        or not isinstance(problems, dict)
        or not all(map(_counts, problems.values()))
    ):
        raise UsageError(f"{path}: a damaged baseline (needs task, and problems with integer n and correct)")
    return Snapshot(str(path), data["task"], data.get("comparable") or {}, problems)


def _counts(problem: Any) -> bool:
    """Whether a baseline's problem entry has the counts the comparison needs."""
    return isinstance(problem, dict) and all(isinstance(problem.get(key), int) for key in ("n", "correct"))


def save_baseline(run_path: str | Path, out: str | Path) -> Snapshot:
    """Write the baseline JSON of a run directory: one line per problem, so that diffs are readable."""
    try:
        run = read_run(Path(run_path))
    except BadRun as exc:
        raise UsageError(f"{run_path}: {exc}") from None
    snap = snapshot_of_run(run, label=run.source)
    if not snap.problems:
        raise UsageError(f"{run_path}: no problem was executed against tests; nothing to gate on")
    head = {"format": FORMAT, "task": snap.task, "source": snap.label, "harness": harness.__version__}
    head["comparable"] = snap.comparable
    head["metrics"] = {k: v for k, v in run.metrics.items() if k.startswith("pass@")}
    lines = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in head.items()]
    rows = [
        f"    {json.dumps(t)}: {json.dumps(p, sort_keys=True)}"
        for t, p in sorted(snap.problems.items(), key=lambda i: _natural(i[0]))
    ]
    text = "{\n" + ",\n".join(lines) + ',\n  "problems": {\n' + ",\n".join(rows) + "\n  }\n}\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    return snap


def compare(
    baseline: Snapshot,
    current: Snapshot,
    metric: str = "pass@1",
    max_drop: float = 0.01,
    alpha: float = 0.05,
    max_changed: int | None = None,
) -> Outcome:
    """The paired comparison (see the module docstring); UsageError where the runs are incomparable."""
    k = _k(metric)
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), not {alpha}")
    if max_drop < 0:
        raise UsageError(f"--max-drop must be >= 0, not {max_drop}")
    _check_comparable(baseline, current, k)
    before = per_problem_pass_at_k(baseline.problems, k)
    after = per_problem_pass_at_k(current.problems, k)
    ids = sorted(before, key=_natural)
    diffs = [after[t] - before[t] for t in ids]
    change = sum(diffs) / len(diffs)
    interval = bootstrap_mean(diffs, confidence=1 - alpha)
    changed = [t for t in ids if _outcome(baseline.problems[t]) != _outcome(current.problems[t])]
    return Outcome(
        metric=metric,
        before=sum(before.values()) / len(ids),
        after=sum(after.values()) / len(ids),
        change=change,
        interval=interval,
        problems=len(ids),
        newly_failed=[t for t in ids if baseline.problems[t]["correct"] > 0 and current.problems[t]["correct"] == 0],
        newly_solved=[t for t in ids if baseline.problems[t]["correct"] == 0 and current.problems[t]["correct"] > 0],
        changed=changed,
        # The tolerance keeps a drop of exactly --max-drop (in decimal) from failing on float rounding.
        regression=-change > max_drop + 1e-12 and interval[1] < 0,
        too_many_changed=max_changed is not None and len(changed) > max_changed,
    )


def _k(metric: str) -> int:
    match = re.fullmatch(r"pass@(\d+)", metric)
    if not match or int(match.group(1)) < 1:
        raise UsageError(f"--metric must be pass@k, e.g. pass@1 (the gate compares per problem), not {metric!r}")
    return int(match.group(1))


def _natural(text: str) -> list[Any]:
    """HumanEval/2 before HumanEval/10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _outcome(problem: dict[str, Any]) -> tuple[int, int, dict[str, int]]:
    return (problem["n"], problem["correct"], problem.get("statuses", {}))


def _check_comparable(baseline: Snapshot, current: Snapshot, k: int) -> None:
    if baseline.task != current.task:
        raise UsageError(f"different tasks: the baseline is {baseline.task!r}, the current run {current.task!r}")
    if not baseline.problems:
        raise UsageError(f"{baseline.label}: no problem was executed against tests; nothing to gate on")
    only_before = sorted(set(baseline.problems) - set(current.problems))
    only_after = sorted(set(current.problems) - set(baseline.problems))
    if only_before or only_after:
        raise UsageError(
            f"different problem sets: {len(only_before)} only in the baseline {only_before[:3]}, "
            f"{len(only_after)} only in the current run {only_after[:3]}"
        )
    for key in sorted(baseline.comparable.keys() & current.comparable.keys()):
        old, new = baseline.comparable[key], current.comparable[key]
        if old is not None and new is not None and old != new:
            raise UsageError(f"incomparable settings: {key} is {old!r} in the baseline, {new!r} in the current run")
    for snap in (baseline, current):
        short = [t for t, p in snap.problems.items() if p["n"] < k]
        if short:
            raise UsageError(f"pass@{k} needs {k} samples per problem; {snap.label} has fewer for {short[0]}")


def report(
    outcome: Outcome,
    baseline: Snapshot,
    current: Snapshot,
    max_drop: float,
    alpha: float,
    max_changed: int | None = None,
) -> str:
    """A short Markdown report: the metric before and after, its interval, the problems that moved."""
    o, level = outcome, f"{100 * (1 - alpha):g}%"
    verdict = "FAIL" if o.failed else "PASS"
    lines = [
        f"## Regression gate: {o.metric} on {baseline.task}: **{verdict}**",
        "",
        f"| | {o.metric} |",
        "|---|---|",
        f"| baseline (`{baseline.label}`) | {o.before:.4f} |",
        f"| current (`{current.label}`) | {o.after:.4f} |",
        f"| change | {o.change:+.4f} ({level} interval {o.interval[0]:+.4f} to {o.interval[1]:+.4f}) |",
        "",
        f"Paired over {o.problems} problems: percentile bootstrap of the per-problem differences "
        f"({RESAMPLES} resamples, seed {SEED}). The gate fails when the drop exceeds {max_drop:g} "
        f"and the {level} interval lies below 0.",
        "",
        _why(o, max_drop, level),
        "",
        _listing("Newly failed", o.newly_failed),
        _listing("Newly solved", o.newly_solved),
    ]
    if max_changed is not None and o.changed:  # the exact check: show how each outcome moved
        lines.append(_changes(o, baseline, current))
    return "\n".join(lines).rstrip() + "\n"


def _why(o: Outcome, max_drop: float, level: str) -> str:
    reasons = []
    if o.regression:
        reasons.append(f"a drop of {-o.change:.4f} exceeds {max_drop:g} and is significant ({level} interval below 0)")
    if o.too_many_changed:
        reasons.append(f"{len(o.changed)} problems changed outcome (more than --max-changed allows)")
    if reasons:
        return "Result: **regression**: " + "; ".join(reasons) + "."
    if -o.change > max_drop:
        return f"Result: no significant regression (the drop of {-o.change:.4f} is within chance at {level})."
    return "Result: no regression."


def _listing(title: str, task_ids: list[str]) -> str:
    shown = ", ".join(f"`{t}`" for t in task_ids[:50]) or "none"
    more = f" and {len(task_ids) - 50} more" if len(task_ids) > 50 else ""
    return f"- {title} ({len(task_ids)}): {shown}{more}"


def _changes(o: Outcome, baseline: Snapshot, current: Snapshot) -> str:
    rows = ["", f"Problems whose outcome changed ({len(o.changed)}):", ""]
    rows += ["| problem | before | after |", "|---|---|---|"]
    for task_id in o.changed[:50]:
        rows.append(f"| `{task_id}` | {_cell(baseline.problems[task_id])} | {_cell(current.problems[task_id])} |")
    return "\n".join(rows)


def _cell(problem: dict[str, Any]) -> str:
    statuses = ", ".join(f"{s} {c}" for s, c in sorted(problem.get("statuses", {}).items()))
    return f"{problem['correct']}/{problem['n']} ({statuses})"


def main(args: Any) -> int:
    """The `harness gate` command (args from harness.cli): 0 pass, 1 regression, 2 bad input."""
    if args.save_baseline:
        if args.baseline or args.current:
            raise UsageError("--save-baseline RUN FILE takes no --baseline or --current")
        run_path, out = args.save_baseline
        snap = save_baseline(run_path, out)
        print(f"wrote {out}: {snap.task}, {len(snap.problems)} problems, from {run_path}")
        return 0
    if not args.baseline or not args.current:
        raise UsageError("give --baseline BASELINE and --current RUN (or --save-baseline RUN FILE)")
    if args.max_changed is not None and args.max_changed < 0:
        raise UsageError(f"--max-changed must be >= 0, not {args.max_changed}")
    baseline, current = load_snapshot(args.baseline), load_snapshot(args.current)
    outcome = compare(baseline, current, args.metric, args.max_drop, args.alpha, args.max_changed)
    text = report(outcome, baseline, current, args.max_drop, args.alpha, args.max_changed)
    print(text, end="")
    if args.report:
        try:
            Path(args.report).write_text(text)
        except OSError as exc:
            raise UsageError(f"cannot write --report {args.report}: {exc}") from None
    return 1 if outcome.failed else 0
