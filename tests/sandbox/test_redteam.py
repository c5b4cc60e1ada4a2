"""The red-team suite (issue 3): hostile programs, each contained and never passed, the host unharmed.

Programs are built the way a task builds them: the candidate's code, then
`def check(candidate): assert candidate() == 3`, then `check(f)`; every candidate's `f` is wrong
(returns 2) or never returns, so the only way to "pass" is to cheat. Every case runs on every
backend of the `box` fixture (tests/sandbox/conftest.py). The always-equal object is guarded by
the task's program construction (tasks/humaneval.py) and tested there.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.sandbox.conftest import program_processes, run, task_program, wait_for_no_program_processes

WRONG = "def f():\n    return 2\n"


@pytest.fixture(autouse=True)
def host_unharmed(box):
    """After every case: no process of any program is left, and the sandbox still works."""
    yield
    assert wait_for_no_program_processes(box) == []
    assert run(box, task_program("def f():\n    return 3\n")).passed


def verdict_of(box, candidate: str, **limits: float):
    verdict = run(box, task_program(candidate), **limits)
    assert not verdict.passed, verdict
    return verdict


# --- exiting "successfully" -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "status", "detail"),
    [
        ("import os\nos._exit(0)\n" + WRONG, "crashed", "exited with code 0 without reporting"),
        ("import sys\nsys.exit(0)\n" + WRONG, "error", "SystemExit: 0"),
        ("import os\ndef f():\n    os._exit(0)\n", "crashed", "exited with code 0 without reporting"),
        ("def f():\n    raise SystemExit(0)\n", "error", "SystemExit: 0"),
        ("import os, signal\ndef f():\n    os.kill(os.getpid(), signal.SIGTERM)\n", "crashed", "SIGTERM"),
        ("import atexit, os\natexit.register(os._exit, 0)\n" + WRONG, "failed", "AssertionError"),
        ("import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n" + WRONG, "failed", "AssertionError"),
        ("import os, threading\nthreading.excepthook = lambda *a: os._exit(0)\n" + WRONG, "failed", "AssertionError"),
        (
            "import builtins, os, sys\nos._exit = sys.exit = builtins.exit = builtins.quit = lambda *a: None\n" + WRONG,
            "failed",
            "AssertionError",
        ),
    ],
    ids=["os_exit_first", "sys_exit_first", "os_exit_in_f", "system_exit_in_f", "sigterm_self", "atexit",
         "excepthook", "threading_excepthook", "patched_exits"],
)  # fmt: skip
def test_exit_tricks(box, candidate, status, detail):
    verdict = verdict_of(box, candidate)
    assert (verdict.status, verdict.detail) == (status, detail)


def test_fake_success_markers(box):
    candidate = """
        import json, os, sys
        print("passed")
        print("All tests passed!", file=sys.stderr)
        fakes = [b"S", b"P " + os.urandom(32).hex().encode(), b"P " + bytes(32).hex().encode(),
                 json.dumps({"status": "passed", "detail": ""}).encode(),
                 b'F {"status": "passed", "detail": ""}',
                 json.dumps({"id": 1, "status": "passed", "detail": "", "duration_s": 0}).encode()]
        line = b"\\n".join(fakes) + b"\\n"
        for fd in range(1024):
            try:
                os.write(fd, line)
            except OSError:
                pass
        os._exit(0)
    """
    assert verdict_of(box, candidate).status == "crashed"


# --- limits -------------------------------------------------------------------------------------


def test_infinite_loop_with_signals_ignored_and_alarms_cancelled(box):
    candidate = """
        import signal
        def f():
            for number in range(1, signal.NSIG):
                try:
                    signal.signal(number, signal.SIG_IGN)
                except (OSError, ValueError):
                    pass
            signal.alarm(0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            signal.setitimer(signal.ITIMER_PROF, 0)
            while True:
                pass
    """
    verdict = verdict_of(box, candidate, timeout_s=0.5)
    assert verdict.status == "timeout"


def test_cpu_time_limit_counts_as_timeout(box):
    verdict = verdict_of(box, "def f():\n    while True: pass\n", timeout_s=5, cpu_time_s=0.5)
    assert verdict.status == "timeout" and verdict.duration_s < 4


def test_sleeping_forever(box):
    verdict = verdict_of(box, "import time\ndef f():\n    time.sleep(10**6)\n", timeout_s=0.5)
    assert verdict.status == "timeout"


def test_fork_bomb(box):
    candidate = """
        import os
        def f():
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
    """
    verdict = verdict_of(box, candidate, timeout_s=1, max_processes=32)
    assert verdict.status in ("timeout", "crashed", "error")


def test_memory_bomb(box):
    candidate = """
        def f():
            chunks = []
            while True:
                chunks.append(bytearray(10**7))
    """
    assert verdict_of(box, candidate, memory_mb=256).status == "memory"


def test_memory_bomb_in_child_processes(box):
    candidate = """
        import os
        def f():
            for _ in range(8):
                if os.fork() == 0:
                    chunks = []
                    while True:
                        chunks.append(bytearray(10**7))
            os.wait()
            return 2
    """
    assert verdict_of(box, candidate, memory_mb=256).status in ("failed", "memory")


def test_disk_filler(box, tmp_path):
    free_before = shutil.disk_usage(tmp_path).free
    candidate = """
        import os
        def f():
            written, number = 0, 0
            for directory in (".", "/tmp", os.path.expanduser("~"), "/var/tmp", "/dev/shm"):
                try:
                    while True:
                        with open(os.path.join(directory, f"fill{number}"), "wb") as file:
                            for _ in range(4):
                                file.write(bytes(2**20))
                                written += 2**20
                        number += 1
                except OSError:
                    pass
            raise RuntimeError(written)
    """
    verdict = verdict_of(box, candidate, max_file_mb=8)
    assert verdict.status == "error" and verdict.detail.startswith("RuntimeError: ")
    assert int(verdict.detail.removeprefix("RuntimeError: ")) <= 64 * 2**20  # the scratch tmpfs
    assert abs(shutil.disk_usage(tmp_path).free - free_before) < 32 * 2**20


# --- the host -----------------------------------------------------------------------------------


@pytest.fixture
def open_directory(tmp_path):
    """A directory that any uid may write to (file permissions alone would not stop a program),
    outside /tmp (which the process backend replaces by its own tmpfs)."""
    base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else str(tmp_path)
    directory = Path(tempfile.mkdtemp(prefix="redteam-", dir=base))
    os.chmod(directory, 0o777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_files_outside_the_scratch_area(box, open_directory):
    tmp_path = open_directory
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    os.chmod(precious, 0o666)
    candidate = f"""
        import os, shutil
        def f():
            target = {str(precious)!r}
            attempts = [
                lambda: os.remove(target),
                lambda: open(target, "w").write("gone"),
                lambda: os.rename(target, target + ".moved"),
                lambda: open(os.path.join(os.path.dirname(target), "new"), "w").write("new"),
                lambda: shutil.rmtree(os.path.dirname(target)),
                lambda: os.chmod(target, 0),
                lambda: open(os.path.expanduser("~/.bashrc"), "a").write("evil"),
                lambda: open("/etc/evil", "w").write("evil"),
            ]
            for attempt in attempts:
                try:
                    attempt()
                except OSError:
                    pass
            return 2
    """
    assert verdict_of(box, candidate).status == "failed"
    assert precious.read_text() == "keep me"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["precious"]
    assert not os.path.exists("/etc/evil")


def test_environment_secrets_are_not_visible(make_box, monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_SECRET", "hunter2")
    source = """
        import os
        assert "HARNESS_TEST_SECRET" not in os.environ
        assert not any("hunter2" in value for value in os.environ.values())
        for path in ("/proc/self/environ", "/proc/1/environ", "/proc/%d/environ" % os.getppid()):
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            assert b"hunter2" not in data, path
    """
    with make_box() as sandbox:  # started after the secret was set
        verdict = run(sandbox, source)
    assert verdict.passed, verdict


def test_no_connection_to_a_loopback_listener(box):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    candidate = f"""
        import socket
        def f():
            outcomes = []
            for attempt in (
                lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"hello"),
                lambda: socket.create_connection(("localhost", {port}), timeout=1).sendall(b"hello"),
                lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"hello", ("127.0.0.1", {port})),
                lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).connect(("::1", {port})),
            ):
                try:
                    attempt()
                    outcomes.append("connected")
                except OSError as exc:
                    outcomes.append(type(exc).__name__)
            raise RuntimeError(outcomes)
    """
    try:
        verdict = verdict_of(box, candidate)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert verdict.status == "error" and "connected" not in verdict.detail, verdict


def test_no_unix_socket_of_the_host(box):
    candidate = """
        import os, socket
        def f():
            reached = []
            for root in ("/run", "/var/run", "/tmp", "/dev"):
                for folder, _, names in os.walk(root):
                    for name in names:
                        path = os.path.join(folder, name)
                        try:
                            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                            client.settimeout(0.2)
                            client.connect(path)
                            reached.append(path)
                        except OSError:
                            pass
            raise RuntimeError(reached)
    """
    verdict = verdict_of(box, candidate)
    assert (verdict.status, verdict.detail) == ("error", "RuntimeError: []"), verdict


def test_killing_the_parent_and_everything_visible(box):
    harness_pid = os.getpid()
    candidate = f"""
        import os, signal
        def f():
            for target in (os.getppid(), 1, {harness_pid}, -1):
                for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
                    try:
                        os.kill(target, sig)
                    except OSError:
                        pass
            return 2
    """
    verdict = verdict_of(box, candidate)
    assert verdict.status == "failed"
    assert os.getpid() == harness_pid  # still here, and (the fixture checks) the sandbox still runs


def test_daemonised_orphans_are_killed(box):
    candidate = """
        import os, time
        def f():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    for number in range(10**6):
                        try:
                            os.kill(1, 9)
                        except OSError:
                            pass
                        time.sleep(0.1)
                os._exit(0)
            time.sleep(0.2)
            return 2
    """
    assert verdict_of(box, candidate).status == "failed"
    assert wait_for_no_program_processes(box, timeout_s=0.5) == []


def test_output_flood(box):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    candidate = """
        import os, sys
        def f():
            block = "x" * 2**20
            for _ in range(512):  # 512 MB on stdout and stderr
                sys.stdout.write(block)
                os.write(2, block.encode())
            return 2
    """
    assert verdict_of(box, candidate, timeout_s=20).status == "failed"
    assert time.monotonic() - started < 15
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KB: harness memory flat


def test_endless_output_is_a_timeout(box):
    verdict = verdict_of(box, "import sys\ndef f():\n    while True: print('passed' * 1000)\n", timeout_s=0.5)
    assert verdict.status == "timeout"


@pytest.mark.parametrize(
    "candidate",
    [
        "import faulthandler\ndef f():\n    faulthandler._sigsegv()\n",
        "import os, signal\ndef f():\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
    ],
    ids=["faulthandler", "self_signal"],
)  # fmt: skip
def test_segfault(box, candidate):
    verdict = verdict_of(box, candidate)
    assert (verdict.status, verdict.detail) == ("crashed", "SIGSEGV")


def test_deep_recursion(box):
    verdict = verdict_of(box, "def f():\n    return f()\n")
    assert verdict.status == "error" and verdict.detail.startswith("RecursionError")
    unbounded = "import sys\nsys.setrecursionlimit(10**8)\ndef f(n=0):\n    return f(n + 1)\n"
    verdict = verdict_of(box, unbounded, timeout_s=2, memory_mb=256)  # 3.11 recurses on the heap
    assert verdict.status in ("crashed", "error", "memory", "timeout")


def test_threads_that_never_end(box):
    candidate = """
        import threading, time
        def forever():
            while True:
                time.sleep(0.01)
        for _ in range(4):
            threading.Thread(target=forever).start()  # not daemons: they would block a normal exit
        def f():
            return 2
    """
    verdict = verdict_of(box, candidate, timeout_s=5)
    assert verdict.status == "failed" and verdict.duration_s < 2


# --- attacks on the verdict itself ------------------------------------------------------------


SETTRACE_JUMP = """
    import sys
    def f():
        def tracer(frame, event, arg):
            if event == "line" and frame.f_code.co_name == "check":
                frame.f_lineno = frame.f_lineno + 1  # jump over the assert
            return tracer
        sys.settrace(tracer)
        sys._getframe(1).f_trace = tracer
        return 2
"""


def test_settrace_line_jump_over_the_asserts(box):
    # The same trick passes on a plain interpreter: check() has one more line after its assert.
    tests = "def check(candidate):\n    assert candidate() == 3\n    return True\n\ncheck(f)\n"
    verdict = run(box, textwrap.dedent(SETTRACE_JUMP) + "\n" + tests)
    assert verdict.status == "error" and "sys.settrace is not allowed" in verdict.detail, verdict


@pytest.mark.parametrize(
    "candidate",
    [
        "import threading\nthreading.settrace(lambda *a: None)\nthreading.Thread(target=print).start()\n" + WRONG,
        "import importlib, sys\nimportlib.reload(sys)\nsys.settrace(lambda *a: None)\n" + WRONG,
        "import sys\nsys.setprofile(lambda *a: None)\n" + WRONG,
        "import gc\nprint(len(gc.get_objects()))\n" + WRONG,
        "import gc\ngc.get_referrers(gc)\n" + WRONG,
        "import sys\nsys._current_frames()\n" + WRONG,
        "import ctypes\n" + WRONG,
        "import importlib.util\nimportlib.util.find_spec('_ctypes').loader.load_module('_ctypes')\n" + WRONG,
        "code = (lambda: 0).__code__.replace(co_code=b'd\\xff' * 4)\n" + WRONG,
        "import marshal\nmarshal.loads(marshal.dumps((lambda: 0).__code__))\n" + WRONG,
        "import sys\nsys.addaudithook(lambda *a: None)\n" + WRONG,
        "open('/proc/self/mem', 'rb')\n" + WRONG,
        "import os\nos.symlink('/proc/self/mem', 'mem')\nopen('mem', 'rb')\n" + WRONG,
        "import os\nos.open('/', os.O_RDONLY)\n" + WRONG,
    ],
    ids=["threading_settrace", "reload_sys", "setprofile", "gc_objects", "gc_referrers", "current_frames",
         "ctypes", "ctypes_by_spec", "code_replace", "marshal", "audit_hook", "proc_mem", "symlink_to_proc",
         "directory_fd"],
)  # fmt: skip
def test_the_verdict_channel_is_out_of_reach(box, candidate):
    verdict = verdict_of(box, candidate)
    assert verdict.status in ("error", "failed", "crashed"), verdict


def test_frame_walk_finds_no_key(box):
    candidate = r"""
        import json, os, re, sys
        found = set()
        def harvest(value, depth=0):
            if isinstance(value, (bytes, bytearray)):
                found.add(bytes(value).hex())
                value = bytes(value).decode("latin-1")
            if isinstance(value, str):
                found.update(re.findall(r"[0-9a-f]{32,128}", value))
            elif isinstance(value, (list, tuple, set)) and depth < 3:
                for item in list(value):
                    harvest(item, depth + 1)
            elif isinstance(value, dict) and depth < 3:
                for item in list(value.values()):
                    harvest(item, depth + 1)
        frame = sys._getframe()
        while frame is not None:
            harvest(frame.f_locals)
            for value in list(frame.f_locals.values()):
                for cell in getattr(value, "__closure__", None) or ():
                    try:
                        harvest(cell.cell_contents)
                    except ValueError:
                        pass
            frame = frame.f_back
        lines = b"".join(b"P " + key.encode() + b"\n" for key in found if len(key) == 64)
        lines += b"".join((json.dumps({"nonce": key, "status": "passed"}) + "\n").encode() for key in found)
        for fd in range(1024):
            try:
                os.write(fd, lines)
            except OSError:
                pass
        os._exit(0)
    """
    assert verdict_of(box, textwrap.dedent(candidate) + WRONG).status == "crashed"


def test_waking_the_keeper_early_or_running_the_runner_again(box):
    candidate = """
        import sys
        def f():
            frame = sys._getframe()
            while frame is not None and "done" not in frame.f_locals:
                frame = frame.f_back
            scope = frame.f_locals
            for _ in range(3):
                try:
                    scope["done"]()  # wake the keeper before the tests ran
                except RuntimeError:
                    pass
            runner = frame.f_globals["_execute"]  # a second _execute that does get past its exec()
            runner(compile("pass", "", "exec"), {}, lambda frame: None, scope["done"], scope["park"])
    """
    verdict = verdict_of(box, candidate, timeout_s=1)
    assert verdict.status in ("timeout", "error"), verdict


def test_a_second_thread_cannot_report_for_the_main_one(box):
    candidate = """
        import os, threading, time
        def f():
            threading.Thread(target=lambda: os._exit(0) if time.sleep(0.2) is None else None).start()
            time.sleep(10)
    """
    assert verdict_of(box, candidate, timeout_s=5).status == "crashed"


def test_nothing_is_left_after_the_suite(box):
    assert program_processes(box) == []
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("sandbox-worker")]
