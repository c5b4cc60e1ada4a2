"""The process sandbox, with real executions only.

Fork and memory bombs are bounded by the sandbox's own limits; develop new ones inside a
throw-away cgroup and `unshare --pid --net --mount --fork` so that a leak cannot take the
machine down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import sandbox.process as process
from sandbox.base import Limits, Program, Verdict
from sandbox.process import ProcessSandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox():
    with ProcessSandbox(workers=2) as box:
        yield box


def run(box: ProcessSandbox, source: str, **limits: float) -> Verdict:
    ((index, verdict),) = box.run_batch([Program(textwrap.dedent(source), Limits(**limits))])
    assert index == 0
    return verdict


def is_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that is not ours to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def needs_pids_cgroup(box: ProcessSandbox) -> None:
    if "pids" in box.missing_protections:
        pytest.skip("no pids cgroup here: escaped processes cannot be found")


# --- verdicts from the program's own ending -------------------------------------------------


def test_passing_program(sandbox):
    verdict = run(sandbox, "def add(a, b): return a + b\nassert add(1, 2) == 3\n")
    assert verdict.passed and verdict.status == "passed"
    assert 0 < verdict.duration_s < 5


def test_failing_assert(sandbox):
    verdict = run(sandbox, "assert 1 + 1 == 3, 'arithmetic\\nis hard'")
    assert (verdict.status, verdict.detail) == ("failed", "AssertionError: arithmetic")


def test_error_names_its_type(sandbox):
    verdict = run(sandbox, "int('x')")
    assert verdict.status == "error"
    assert verdict.detail.startswith("ValueError: invalid literal for int()")


def test_recursion_error(sandbox):
    verdict = run(sandbox, "def f(): return f()\nf()")
    assert verdict.status == "error" and verdict.detail.startswith("RecursionError: ")


def test_syntax_error(sandbox):
    assert run(sandbox, "def f(:\n    pass").status == "syntax_error"
    verdict = run(sandbox, "if True:\nreturn 1")
    assert verdict.status == "syntax_error" and verdict.detail.startswith("IndentationError")


def test_stdin_is_empty_not_the_request(sandbox):
    assert run(sandbox, "import sys\nassert sys.stdin.read() == ''").passed


def test_file_size_limit(sandbox):
    verdict = run(sandbox, "open('big', 'wb').write(bytes(8 * 2**20))", max_file_mb=4)
    assert verdict.status == "error" and "File too large" in verdict.detail


# --- limits -----------------------------------------------------------------------------------


def test_infinite_loop_times_out(sandbox):
    verdict = run(sandbox, "while True: pass", timeout_s=1)
    assert verdict.status == "timeout"
    assert 1 <= verdict.duration_s < 3


def test_ignored_signals_do_not_stop_the_timeout(sandbox):
    source = """
        import signal
        for name in ("SIGALRM", "SIGTERM", "SIGINT", "SIGHUP", "SIGXCPU"):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        while True:
            pass
    """
    assert run(sandbox, source, timeout_s=0.5).status == "timeout"


def test_memory_bomb(sandbox):
    assert run(sandbox, "x = bytearray(4 * 2**30)", memory_mb=256).status == "memory"
    # The program still holds the memory when the runner reports: a prepared record is used.
    growing = "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"
    assert run(sandbox, growing, memory_mb=256).status == "memory"


def test_segfault_is_a_crash(sandbox):
    verdict = run(sandbox, "import ctypes\nctypes.string_at(0)")
    assert (verdict.status, verdict.detail) == ("crashed", "SIGSEGV")


def test_process_limit_holds(sandbox):
    if "pids" in sandbox.missing_protections and os.geteuid() == 0:
        pytest.skip("root without a pids cgroup has no process limit")
    source = """
        import os, time
        children, error = 0, None
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError as exc:
                error = exc
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
        assert error is not None and children < 16, (children, error)
    """
    assert run(sandbox, source, max_processes=16).passed


# --- what can never pass ----------------------------------------------------------------------


def test_sys_exit_zero_is_not_a_pass(sandbox):
    verdict = run(sandbox, "import sys\nsys.exit(0)\nassert False")
    assert (verdict.status, verdict.detail) == ("error", "SystemExit: 0")


def test_os_exit_zero_is_not_a_pass(sandbox):
    verdict = run(sandbox, "import os\nos._exit(0)\nassert False")
    assert (verdict.status, verdict.detail) == ("crashed", "exited with code 0 without reporting")


def test_fake_output_on_stdout_is_not_a_pass(sandbox):
    source = """
        import os, sys
        print("passed")
        print('{"nonce": "", "status": "passed", "detail": ""}')
        sys.stdout.flush()
        os._exit(0)
    """
    assert run(sandbox, source).status == "crashed"


def test_fake_records_on_every_descriptor_are_not_a_pass(sandbox):
    source = """
        import os
        fakes = [{"status": "started"}, {"status": "passed"}, {"nonce": "0" * 32, "status": "passed"},
                 {"nonce": "", "status": "passed", "detail": ""}, {"nonce": None, "status": "passed"}]
        line = "".join(__import__("json").dumps(fake) + "\\n" for fake in fakes).encode()
        for fd in range(256):
            try:
                os.write(fd, line)
            except OSError:
                pass
        os._exit(0)
    """
    verdict = run(sandbox, source)
    assert verdict.status == "crashed", verdict


def test_patching_what_the_runner_uses_is_not_a_pass(sandbox):
    source = """
        import builtins, json, json.encoder, os
        real_write = os.write
        os.write = lambda fd, data: real_write(fd, data.replace(b'"failed"', b'"passed"'))
        json.dumps = lambda *args, **kwargs: '{"status": "passed"}'
        json.encoder.encode_basestring_ascii = lambda text: '"", "status": "passed"'
        assert False
    """
    assert run(sandbox, source).status == "failed"
    # Replaced builtins can blur failed into error, never into passed.
    verdict = run(sandbox, "import builtins\nbuiltins.AssertionError = KeyError\nassert False")
    assert verdict.status in ("failed", "error")


# --- isolation and clean-up -------------------------------------------------------------------


def test_environment_is_empty(sandbox, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    source = """
        import os
        assert "SECRET_TOKEN" not in os.environ
        assert set(os.environ) <= {"LC_CTYPE"}, sorted(os.environ)  # Python's own locale coercion
    """
    assert run(sandbox, source).passed


def test_cwd_is_private_and_removed(sandbox):
    source = """
        import os, stat
        cwd = os.getcwd()
        assert stat.S_IMODE(os.stat(cwd).st_mode) == 0o700
        assert os.listdir(cwd) == []
        os.makedirs("deep/er")
        open("deep/er/file", "w").write("x")
        os.chmod("deep", 0)
        raise RuntimeError(cwd)
    """
    verdict = run(sandbox, source)
    assert verdict.status == "error" and verdict.detail.startswith("RuntimeError: /")
    assert not os.path.exists(verdict.detail.removeprefix("RuntimeError: "))


def test_background_processes_are_killed(sandbox):
    needs_pids_cgroup(sandbox)
    source = """
        import os, subprocess, sys, time
        read_end, write_end = os.pipe()
        if os.fork() == 0:  # double fork into a new session: not in our process group
            os.setsid()
            if os.fork() == 0:
                os.write(write_end, b"%d " % os.getpid())
                time.sleep(1000)
            os._exit(0)
        popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"],
                                 start_new_session=True)
        time.sleep(0.2)
        raise RuntimeError(os.read(read_end, 100).decode() + str(popen.pid))
    """
    verdict = run(sandbox, source)
    assert verdict.status == "error", verdict
    pids = [int(pid) for pid in verdict.detail.removeprefix("RuntimeError: ").split()]
    assert len(pids) == 2 and all(is_dead(pid) for pid in pids)


def test_cgroups_are_removed(sandbox):
    needs_pids_cgroup(sandbox)
    parent = sandbox._cgroups.parents["pids"]
    assert run(sandbox, "import os\nos.fork()").passed
    assert parent.is_dir() and [path for path in parent.iterdir() if path.is_dir()] == []
    sandbox.close()
    assert not parent.exists()


def test_stopping_a_batch_early_kills_what_runs(sandbox, tmp_path):
    pid_file = tmp_path / "pid"  # outside the scratch directory: allowed for now
    slow = Program(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)")
    batch = sandbox.run_batch([slow, Program("import time\ntime.sleep(0.5)")])
    assert next(batch)[0] == 1
    started = time.monotonic()
    batch.close()
    assert time.monotonic() - started < 5
    assert is_dead(int(pid_file.read_text()))


def test_leftovers_of_a_killed_harness_are_cleaned_up_by_the_next(sandbox, tmp_path):
    needs_pids_cgroup(sandbox)
    pid_file = tmp_path / "pid"  # outside the scratch directory: allowed for now
    program = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)"
    script = (
        f"from sandbox.base import Limits, Program\nfrom sandbox.process import ProcessSandbox\n"
        f"list(ProcessSandbox(1).run_batch([Program({program!r}, Limits(timeout_s=60))]))"
    )
    harness = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(harness.pid, signal.SIGKILL)
    harness.wait()
    program_pid = int(pid_file.read_text())
    assert not is_dead(program_pid)  # a SIGKILLed harness cannot clean up after itself...
    ProcessSandbox(1).close()  # ...the next sandbox to start does
    assert is_dead(program_pid)
    leftovers = [
        *Path(tempfile.gettempdir()).glob(f"sandbox-*-{harness.pid}-*"),
        *sandbox._cgroups.parents["pids"].parent.glob(f"harness-sandbox-*-{harness.pid}"),
    ]
    assert leftovers == []


# --- batches ------------------------------------------------------------------------------------


def test_many_programs_come_back_with_their_indices(sandbox):
    programs = [Program(f"raise ValueError({i})" if i % 3 else f"assert {i} == {i}") for i in range(50)]
    verdicts = dict(sandbox.run_batch(programs))
    assert sorted(verdicts) == list(range(50))
    for i, verdict in verdicts.items():
        expected = ("passed", "") if i % 3 == 0 else ("error", f"ValueError: {i}")
        assert (verdict.status, verdict.detail) == expected


def test_timeout_is_rerun_alone_at_the_end(sandbox, tmp_path):
    marker = tmp_path / "ran-once"  # outside the scratch directory: allowed for now
    flaky = f"""
        import os, time
        if not os.path.exists({str(marker)!r}):
            open({str(marker)!r}, "w").close()
            time.sleep(30)
    """
    programs = [Program(textwrap.dedent(flaky), Limits(timeout_s=1))]
    programs += [Program("import time\ntime.sleep(1.5)", Limits(timeout_s=1))]
    programs += [Program("sum(range(10**5))") for _ in range(10)]
    results = list(sandbox.run_batch(programs))
    order, verdicts = [index for index, _ in results], dict(results)
    assert sorted(order) == list(range(12))
    assert set(order[-2:]) == {0, 1}  # the timeouts come last, after their re-runs
    assert verdicts[0].passed  # timed out once, passed when re-run
    assert verdicts[1].status == "timeout"


# --- the sandbox's own failures --------------------------------------------------------------


def test_interpreter_that_cannot_start_is_a_sandbox_error(sandbox, monkeypatch):
    monkeypatch.setattr(process.sys, "executable", "/nonexistent/python")
    verdict = run(sandbox, "assert True")
    assert verdict.status == "sandbox_error" and "FileNotFoundError" in verdict.detail


def test_runner_that_never_starts_is_a_sandbox_error(sandbox, monkeypatch):
    monkeypatch.setattr(process, "RUNNER", Path("/nonexistent/runner.py"))
    verdict = run(sandbox, "assert True")
    assert verdict.status == "sandbox_error" and "before the program" in verdict.detail
