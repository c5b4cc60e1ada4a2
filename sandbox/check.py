"""`harness sandbox check`: which protections this machine gives a sandbox backend."""

from __future__ import annotations

from importlib.metadata import entry_points

# What each protection stops, for the table.
PURPOSES = {
    "pid_namespace": "programs see and signal only their own processes; nothing outlives them",
    "net_namespace": "no network at all, loopback included",
    "mount_namespace": "a private view of the filesystem",
    "ipc_namespace": "no shared memory or message queues with the host",
    "uts_namespace": "a hostname of its own",
    "readonly_root": "no file outside the scratch area can be written or deleted",
    "private_tmpfs": "a small scratch tmpfs of its own, wiped after each program",
    "unprivileged_uid": "programs run as nobody, not as the harness's user",
    "pids_cgroup": "a hard cap on processes (fork bombs)",
    "memory_cgroup": "a hard cap on memory, processes and threads together",
    "rlimits": "CPU time, file size, open files, address space, no core dumps",
    "no_new_privs": "no privilege gained through setuid programs",
    "seccomp": "no sockets but AF_UNIX, ptrace, mount, unshare, bpf, keyctl, io_uring, ...",
    "empty_env": "no environment variables (secrets) of the harness",
}


def check(backend: str = "process") -> dict[str, bool | str]:
    """Start one server of `backend` and return its protections: {name: True | why missing}."""
    with _backend(backend)(workers=1) as sandbox:
        return dict(sandbox.protections)


def format_check(protections: dict[str, bool | str]) -> str:
    """The protections as an aligned table, one per line, and a closing count."""
    width = max([len("protection"), *map(len, protections)])
    lines = [f"{'protection':<{width}}  status  what it stops / why it is missing"]
    for name, value in protections.items():
        if value is True:
            lines.append(f"{name:<{width}}  yes     {PURPOSES.get(name, '')}".rstrip())
        else:
            lines.append(f"{name:<{width}}  NO      {value}")
    have = sum(value is True for value in protections.values())
    lines.append(f"{have} of {len(protections)} protections in place")
    return "\n".join(lines)


def _backend(name: str):  # noqa: ANN202 - a Sandbox class
    if name == "process":
        from .process import ProcessSandbox

        return ProcessSandbox
    for entry in entry_points(group="harness.sandboxes"):
        if entry.name == name:
            return entry.load()
    raise ValueError(f"unknown sandbox backend {name!r}")
