"""Fixtures for the sandbox tests: `box` is each sandbox backend in turn.

Hostile programs are bounded by the sandbox's own limits; develop new ones inside a throw-away
cgroup and `unshare --pid --net --mount --fork` so that a leak cannot take the machine down.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.base import Limits, Program, Verdict
from sandbox.process import ProcessSandbox

# Backend name -> sandbox class (called with workers=N). The docker backend adds itself here
# and to BACKEND_PARAMS, marked `docker`.
BACKENDS: dict[str, Callable[..., object]] = {"process": ProcessSandbox}
BACKEND_PARAMS = [pytest.param("process")]


def docker_image() -> str:
    """The docker sandbox's image, (re)built if missing or stale; a skip where no engine answers."""
    from harness.errors import UsageError
    from sandbox.image.build import build_image
    from sandbox.image.engine import DEFAULT_IMAGE, require_engine, require_image

    try:
        require_engine()
    except UsageError as exc:
        pytest.skip(str(exc))
    try:
        require_image(DEFAULT_IMAGE)
    except UsageError:
        build_image(DEFAULT_IMAGE, log=lambda line: None)
    return DEFAULT_IMAGE


def _docker_sandbox(workers: int = 2) -> object:
    from sandbox.docker import DockerSandbox

    return DockerSandbox(workers=workers, image=docker_image())


BACKENDS["docker"] = _docker_sandbox
BACKEND_PARAMS.append(pytest.param("docker", marks=pytest.mark.docker))


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def box(backend: str) -> Iterator[object]:
    """One sandbox per backend, shared by a module's tests (later programs must still run)."""
    with BACKENDS[backend](workers=2) as sandbox:
        yield sandbox


@pytest.fixture
def make_box(backend: str) -> Callable[..., object]:
    """Fresh sandboxes of the current backend (for state that must exist before they start)."""
    return lambda workers=1: BACKENDS[backend](workers=workers)


def run(sandbox: object, source: str, **limits: float) -> Verdict:
    """Run one program (dedented) and return its verdict."""
    ((index, verdict),) = sandbox.run_batch([Program(textwrap.dedent(source), Limits(**limits))])
    assert index == 0
    return verdict


def task_program(candidate: str, entry_point: str = "f") -> str:
    """A program built the way a task builds one: the candidate's code, the tests, the call."""
    tests = "def check(candidate):\n    assert candidate() == 3\n"
    return f"{textwrap.dedent(candidate)}\n\n{tests}\n\ncheck({entry_point})\n"


def program_processes(sandbox: object) -> list[int]:
    """Host pids of processes that programs left running (the servers' descendants other than
    the zygotes). Empty for backends whose programs are not this machine's descendants."""
    servers = getattr(sandbox, "server_processes", lambda: [])()
    return [pid for server in servers for pid in programs_of(server.pid)]


def programs_of(server: int) -> list[int]:
    """Live processes of programs under the fork server started as `server` (a launcher whose
    child is the zygote, or the zygote itself)."""
    zygotes = {pid for pid in (server, *children(server)) if b"--zygote" in cmdline(pid)}
    return [pid for pid in descendants(server) if pid not in zygotes and not is_dead(pid)]


def wait_for_no_program_processes(sandbox: object, timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := program_processes(sandbox)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def parents() -> dict[int, int]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                found[int(name)] = int(Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return found


def children(pid: int) -> list[int]:
    return [child for child, parent in parents().items() if parent == pid]


def descendants(pid: int) -> list[int]:
    tree, found, frontier = parents(), [], {pid}
    while frontier:
        frontier = {child for child, parent in tree.items() if parent in frontier}
        found += frontier
    return found


def is_dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")
