"""The process sandbox: the fork server (sandbox/forkserver.py) and the pool (sandbox/pool.py),
with real executions only. The hostile programs are in test_redteam.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import sandbox.forkserver as forkserver
import sandbox.process as process
from sandbox.base import STATUSES, Limits, Program, Verdict
from sandbox.check import check, format_check
from sandbox.pool import ForkServerPool
from sandbox.process import FORKSERVER, ProcessSandbox
from tests.sandbox.conftest import (
    children,
    cmdline,
    descendants,
    is_dead,
    program_processes,
    programs_of,
    wait_for_no_program_processes,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sandbox():
    with ProcessSandbox(workers=2) as box:
        yield box


def run(box: ProcessSandbox, source: str, **limits: float) -> Verdict:
    ((index, verdict),) = box.run_batch([Program(textwrap.dedent(source), Limits(**limits))])
    assert index == 0
    return verdict


def needs(box: ProcessSandbox, *names: str) -> None:
    missing = [name for name in names if name in box.missing_protections]
    if missing:
        pytest.skip(f"this machine does not give {missing}")


def cgroup_parent(server_pid: int) -> Path:
    """The pids cgroup folder of the fork server started as `server_pid`."""
    own = next(line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines() if ":pids:" in line)
    return Path("/sys/fs/cgroup/pids", own.lstrip("/"), f"harness-sandbox-{forkserver.OWNER}{server_pid}")


# --- verdicts from the program's own ending -------------------------------------------------


def test_an_interpreter_link_under_the_hidden_tmp_still_starts(monkeypatch, tmp_path):
    # A venv in a clone under /tmp: its bin/python is a link that the server's /tmp tmpfs hides.
    link = tmp_path / "python"
    link.symlink_to(os.path.realpath(sys.executable))
    monkeypatch.setattr(sys, "executable", str(link))
    with ProcessSandbox(workers=1) as box:
        assert run(box, "assert 1 + 1 == 2").status == "passed"


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


def test_syntax_error(sandbox):
    assert run(sandbox, "def f(:\n    pass").status == "syntax_error"
    verdict = run(sandbox, "if True:\nreturn 1")
    assert verdict.status == "syntax_error" and verdict.detail.startswith("IndentationError")
    assert run(sandbox, "x = 1\0").status == "syntax_error"


def test_stdin_is_empty_not_the_request(sandbox):
    assert run(sandbox, "import sys\nassert sys.stdin.read() == ''").passed


def test_stdlib_modules_not_preloaded_still_import(sandbox):
    source = "import sqlite3, xml.dom.minidom, email.message, zipfile\nassert sqlite3.connect(':memory:')"
    assert run(sandbox, source).passed


def test_programs_get_a_fresh_main_module_and_fresh_randomness(sandbox):
    source = "import random, sys\nassert __name__ == '__main__' and sys.modules['__main__'].__dict__ is globals()\n"
    source += "raise ValueError(random.random())"
    details = {verdict.detail for _, verdict in sandbox.run_batch([Program(source)] * 6)}
    assert len(details) == 6


def test_file_size_limit(sandbox):
    verdict = run(sandbox, "open('big', 'wb').write(bytes(8 * 2**20))", max_file_mb=4)
    assert verdict.status == "error" and "File too large" in verdict.detail


# --- limits -----------------------------------------------------------------------------------


def test_infinite_loop_times_out(sandbox):
    # A CPU limit above the wall clock's: with both at 1 s, either could end the loop first.
    verdict = run(sandbox, "while True: pass", timeout_s=1, cpu_time_s=5)
    assert verdict.status == "timeout" and verdict.detail == "wall clock limit of 1s"
    assert 1 <= verdict.duration_s < 3


def test_cpu_time_limit(sandbox):
    verdict = run(sandbox, "while True: pass", timeout_s=10, cpu_time_s=1)
    assert (verdict.status, verdict.detail) == ("timeout", "CPU time limit of 1s")
    assert verdict.duration_s < 5


def test_ignored_signals_do_not_stop_the_timeout(sandbox):
    source = """
        import signal
        for name in ("SIGALRM", "SIGTERM", "SIGINT", "SIGHUP", "SIGXCPU"):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        while True:
            pass
    """
    assert run(sandbox, source, timeout_s=0.5).status == "timeout"


def test_memory_limit(sandbox):
    assert run(sandbox, "x = bytearray(4 * 2**30)", memory_mb=256).status == "memory"
    # The program still holds the memory when it reports: a prepared record is used.
    growing = "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"
    assert run(sandbox, growing, memory_mb=256).status == "memory"


def test_out_of_memory_kill_is_memory(sandbox):
    needs(sandbox, "memory_cgroup")
    source = """
        import os
        for _ in range(6):  # each within its own address-space limit; together over the cgroup's
            if os.fork() == 0:
                chunks = []
                for _ in range(20):
                    chunks.append(bytearray(10**7))
                import time; time.sleep(5)
                os._exit(0)
        os.wait()
        os._exit(0)
    """
    verdict = run(sandbox, source, memory_mb=256)
    assert verdict.status == "memory" and "out-of-memory" in verdict.detail


def test_segfault_is_a_crash(sandbox):
    verdict = run(sandbox, "import faulthandler\nfaulthandler._sigsegv()")
    assert (verdict.status, verdict.detail) == ("crashed", "SIGSEGV")


def test_process_limit_holds(sandbox):
    if "pids_cgroup" in sandbox.missing_protections and os.geteuid() == 0:
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


# --- isolation --------------------------------------------------------------------------------


def test_protections_are_reported(sandbox):
    protections = sandbox.protections
    assert tuple(protections) == forkserver.PROTECTIONS
    assert all(value is True or (isinstance(value, str) and value) for value in protections.values())
    assert sandbox.missing_protections == tuple(name for name, value in protections.items() if value is not True)


def test_environment_is_empty(sandbox):
    source = """
        import os
        assert set(os.environ) <= {"LC_CTYPE"}, sorted(os.environ)  # Python's own locale coercion
    """
    assert run(sandbox, source).passed


def test_isolation_inside(sandbox):
    needs(sandbox, "pid_namespace", "mount_namespace", "unprivileged_uid", "readonly_root", "private_tmpfs")
    source = """
        import os, socket
        assert os.getuid() == os.geteuid() == 65534 and os.getgid() == 65534
        assert socket.gethostname() == "sandbox"
        assert os.getppid() == 1  # the zygote, PID 1 of the namespace
        assert sorted(int(p) for p in os.listdir("/proc") if p.isdigit()) == [1, os.getpid()]
        for path in ("/usr/evil", "/etc/evil", os.path.expanduser("~/evil")):
            try:
                open(path, "w")
            except OSError:
                pass
            else:
                raise AssertionError(path)
        open("/tmp/fine", "w").write("x")  # the tmpfs: the only writable place
    """
    verdict = run(sandbox, source)
    assert verdict.passed, verdict


def test_cwd_is_private_and_wiped(sandbox):
    source = """
        import os, stat
        assert stat.S_IMODE(os.stat(".").st_mode) == 0o700
        assert os.listdir(".") == []
        assert [name for name in os.listdir("/tmp") if name != os.path.basename(os.getcwd())] == []
        os.makedirs("deep/er")
        open("deep/er/file", "w").write("x")
        open("/tmp/litter", "w").write("x")
        os.chmod("deep", 0)
    """
    with ProcessSandbox(workers=1) as box:  # one server: the second program sees what the first left
        assert run(box, source).passed
        assert run(box, source).passed


def test_background_processes_are_killed(sandbox):
    source = """
        import os, subprocess, sys, time
        if os.fork() == 0:  # double fork into a new session: not in our process group
            os.setsid()
            if os.fork() == 0:
                time.sleep(1000)
            os._exit(0)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"], start_new_session=True)
        time.sleep(0.3)
    """
    assert run(sandbox, source).passed
    assert program_processes(sandbox) == []


def test_cgroups_are_removed():
    box = ProcessSandbox(workers=1)
    needs(box, "pids_cgroup")
    (server,) = box.server_processes()
    parent = cgroup_parent(server.pid)
    assert run(box, "import os, time\nif os.fork() == 0:\n    time.sleep(60)").passed
    # One cgroup, the zygote's, reused by every execution; after one, only the zygote is in it.
    assert [path.name for path in parent.iterdir() if path.is_dir()] == ["zygote"]
    assert len((parent / "zygote" / "cgroup.procs").read_text().split()) == 1
    box.close()
    assert not parent.exists()


def test_servers_start_with_the_sandbox_and_an_unused_one_closes_cleanly():
    box = ProcessSandbox(workers=2)
    servers = box.server_processes()  # started, not yet waited for: the caller prepares meanwhile
    assert len(servers) == 2
    box.close()
    assert all(server.poll() is not None for server in servers)
    assert box.server_processes() == []


def test_stopping_a_batch_early_kills_what_runs(sandbox):
    slow = Program("import time\ntime.sleep(60)", Limits(timeout_s=60))
    batch = sandbox.run_batch([slow, Program("import time\ntime.sleep(0.5)")])
    assert next(batch)[0] == 1
    assert program_processes(sandbox)  # the slow one
    started = time.monotonic()
    batch.close()
    assert time.monotonic() - started < 5
    assert wait_for_no_program_processes(sandbox) == []
    assert run(sandbox, "pass").passed  # the interrupted server is replaced


def test_a_killed_harness_leaves_nothing_and_the_next_one_reaps_its_cgroups(tmp_path):
    script = (
        "from sandbox.base import Limits, Program\nfrom sandbox.process import ProcessSandbox\n"
        "list(ProcessSandbox(1).run_batch([Program('import time; time.sleep(60)', Limits(timeout_s=60))]))"
    )
    harness = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 20
    programs: list[int] = []
    while time.monotonic() < deadline and not programs:
        servers = [pid for pid in children(harness.pid) if b"forkserver.py" in cmdline(pid)]
        programs = [pid for server in servers for pid in programs_of(server)]
        time.sleep(0.05)
    assert programs, "the program never started"
    (server,) = servers
    parent = cgroup_parent(server)
    for pid in (harness.pid, server):  # nobody left to clean up: the launcher is gone too
        os.kill(pid, signal.SIGKILL)
    harness.wait()
    deadline = time.monotonic() + 5
    while any(not is_dead(pid) for pid in programs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(is_dead(pid) for pid in programs)  # the PID namespace died with its zygote
    with ProcessSandbox(1) as box:
        if "pids_cgroup" in box.missing_protections:
            return
        box.protections  # noqa: B018 - starts a server, which reaps what dead ones left
        assert not parent.exists()


# --- batches and the pool -----------------------------------------------------------------------


def test_many_programs_come_back_with_their_indices(sandbox):
    programs = [Program(f"raise ValueError({i})" if i % 3 else f"assert {i} == {i}") for i in range(50)]
    verdicts = dict(sandbox.run_batch(programs))
    assert sorted(verdicts) == list(range(50))
    for i, verdict in verdicts.items():
        expected = ("passed", "") if i % 3 == 0 else ("error", f"ValueError: {i}")
        assert (verdict.status, verdict.detail) == expected


def test_timeout_is_rerun_alone_at_the_end(sandbox):
    # Slow only when it runs in the first second of the batch: a timeout that a re-run clears.
    flaky = f"import time\nif time.time() < {time.time() + 0.9}:\n    time.sleep(30)\n"
    programs = [Program(flaky, Limits(timeout_s=1))]
    programs += [Program("import time\ntime.sleep(1.5)", Limits(timeout_s=1))]
    programs += [Program("sum(range(10**5))") for _ in range(10)]
    results = list(sandbox.run_batch(programs))
    order, verdicts = [index for index, _ in results], dict(results)
    assert sorted(order) == list(range(12))
    assert set(order[-2:]) == {0, 1}  # the timeouts come last, after their re-runs
    assert verdicts[0].passed  # timed out once, passed when re-run
    assert verdicts[1].status == "timeout"


class CountingPrograms(Sequence):
    """A lazy program list that remembers the furthest index read."""

    def __init__(self, count: int) -> None:
        self.count, self.furthest = count, -1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # noqa: ANN001, ANN204
        self.furthest = max(self.furthest, index)
        return Program("pass")


def test_programs_are_handed_out_a_few_at_a_time(sandbox):
    programs = CountingPrograms(400)
    for consumed, _ in enumerate(sandbox.run_batch(programs), start=1):
        assert programs.furthest < consumed + 2 * sandbox.workers + 1
    assert consumed == 400


def test_a_program_list_that_raises_gives_sandbox_errors_not_a_hang(sandbox):
    class Broken(CountingPrograms):
        def __getitem__(self, index):  # noqa: ANN001, ANN204
            if index == 3:
                raise KeyError("gone")
            return super().__getitem__(index)

    verdicts = dict(sandbox.run_batch(Broken(6)))
    assert sorted(verdicts) == list(range(6))
    assert verdicts[3].status == "sandbox_error" and all(verdicts[i].passed for i in (0, 1, 2, 4, 5))


# --- the servers' own failures ----------------------------------------------------------------


def test_interpreter_that_cannot_start_is_a_sandbox_error(monkeypatch):
    monkeypatch.setattr(process.sys, "executable", "/nonexistent/python")
    with ProcessSandbox(1) as box:
        verdict = run(box, "assert True")
    assert verdict.status == "sandbox_error" and "FileNotFoundError" in verdict.detail


def test_server_that_never_gets_ready_is_a_sandbox_error(monkeypatch):
    monkeypatch.setattr(process, "FORKSERVER", Path("/nonexistent/forkserver.py"))
    with ProcessSandbox(1) as box:
        verdict = run(box, "assert True")
    assert verdict.status == "sandbox_error" and "ended" in verdict.detail


def test_a_server_that_dies_is_restarted_and_the_program_retried(sandbox, caplog):
    batch = sandbox.run_batch([Program("import time\ntime.sleep(1)")])
    consumer = threading.Thread(target=lambda: results.extend(batch))
    results: list = []
    consumer.start()
    deadline = time.monotonic() + 10
    while not program_processes(sandbox):  # the program runs
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for server in sandbox.server_processes():  # as if the OOM killer took the servers
        server.kill()
    consumer.join()
    ((_, verdict),) = results
    assert verdict.passed
    assert "restarting" in caplog.text


def fake_server(behaviour: str):  # noqa: ANN201
    """A start_server that runs a misbehaving stand-in for the fork server."""
    script = textwrap.dedent(f"""
        import json, sys, time
        print(json.dumps({{"ready": True, "protections": {{"seccomp": "not here"}}}}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            if {behaviour!r} == "hang":
                time.sleep(60)
            elif {behaviour!r} == "garbage":
                print("not json", flush=True)
            elif {behaviour!r} == "wrong_id":
                print(json.dumps({{"id": -1, "status": "passed", "detail": "", "duration_s": 0}}), flush=True)
            elif {behaviour!r} == "die":
                sys.exit(3)
            elif {behaviour!r} == "sandbox_error":
                print(json.dumps({{"id": request["id"], "status": "sandbox_error", "detail": "no", "duration_s": 0}}),
                      flush=True)
    """)
    started: list[int] = []

    def start(worker: int) -> subprocess.Popen[bytes]:
        started.append(worker)
        return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    return start, started


@pytest.mark.parametrize("behaviour", ["hang", "garbage", "wrong_id", "die", "sandbox_error"])
def test_misbehaving_servers_give_sandbox_errors_after_one_retry(behaviour):
    start, started = fake_server(behaviour)
    with ForkServerPool(1, start, grace_s=0.3) as pool:
        ((_, verdict),) = list(pool.run_batch([Program("pass", Limits(timeout_s=0.2))]))
        assert pool.protections == {"seccomp": "not here"}
    assert verdict.status == "sandbox_error"
    assert len(started) == (1 if behaviour == "sandbox_error" else 2)  # a broken server is replaced


# --- the fork server's protocol -----------------------------------------------------------------


def start_server() -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-I", "-S", "-B", str(FORKSERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={}
    )
    assert server.stdout is not None and server.stdin is not None
    ready = json.loads(server.stdout.readline())
    assert ready["ready"] is True and set(ready["protections"]) == set(forkserver.PROTECTIONS)
    return server


def test_protocol_answers_bad_requests():
    server = start_server()
    requests = [
        b"not json",
        json.dumps({"id": 7, "source": 42}).encode(),
        json.dumps({"id": 8, "source": "pass", "limits": {"timeout_s": -1}}).encode(),
        json.dumps({"id": 9, "source": "assert False", "limits": {"timeout_s": 5, "cpu_time_s": None}}).encode(),
    ]
    answers = []
    for request in requests:
        server.stdin.write(request + b"\n")
        server.stdin.flush()
        answers.append(json.loads(server.stdout.readline()))
    server.stdin.close()
    assert server.wait(10) == 0
    assert [(answer["id"], answer["status"]) for answer in answers] == [
        (None, "sandbox_error"),
        (7, "sandbox_error"),
        (8, "sandbox_error"),
        (9, "failed"),
    ]
    assert all(set(answer) == {"id", "status", "detail", "duration_s"} for answer in answers)
    assert {answer["status"] for answer in answers} <= set(STATUSES)


def test_protocol_eof_kills_what_runs_and_exits():
    server = start_server()
    request = {"id": 1, "source": "import time\ntime.sleep(60)", "limits": {"timeout_s": 60}}
    server.stdin.write(json.dumps(request).encode() + b"\n")
    server.stdin.flush()
    deadline = time.monotonic() + 10
    while not programs_of(server.pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    server.stdin.close()
    answer = json.loads(server.stdout.readline())
    assert (answer["id"], answer["status"]) == (1, "sandbox_error") and "interrupted" in answer["detail"]
    assert server.wait(10) == 0 and time.monotonic() - started < 5
    assert descendants(server.pid) == []


def test_a_copy_of_the_fork_server_under_tmp_still_starts(tmp_path):
    # /tmp is replaced by the server's own tmpfs before the zygote starts: it runs from a descriptor.
    copy = tmp_path / "forkserver.py"
    copy.write_bytes(FORKSERVER.read_bytes())
    start = lambda worker: subprocess.Popen(  # noqa: E731
        [sys.executable, "-I", "-S", "-B", str(copy)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={}
    )
    with ForkServerPool(1, start) as pool:
        ((_, verdict),) = pool.run_batch([Program("assert 1 + 1 == 2")])
    assert verdict.passed, verdict


def test_sandbox_check_reports_this_machine():
    protections = check("process")
    table = format_check(protections)
    assert set(protections) == set(forkserver.PROTECTIONS)
    assert all(name in table for name in protections)
    assert table.splitlines()[-1].endswith(f"of {len(protections)} protections in place")
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        check("nonexistent")
