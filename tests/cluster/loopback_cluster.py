"""A two-node Ray cluster on loopback only, for the tests and benchmarks/ray_scaling.py.

Ray binds to the machine's primary address even when asked for 127.0.0.1; in a network namespace
that holds only loopback it falls back to 127.0.0.1. So the caller runs its script through
`in_namespaces()` (new network, PID and mount namespaces: every Ray process ends with the
script, and no `ray stop` has to find processes by name), and the script calls `loopback_up()`
before it starts the cluster.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
LOOPBACK = "127.0.0.1"  # the only address of the namespace; naming it spares Ray its probing


def namespace_command(script: Path | str, *args: object) -> list[str]:
    """The command running `script` with this interpreter in its own network, PID and mount namespaces."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("unshare (util-linux) is needed to keep the test cluster on loopback")
    return [
        unshare,
        "--net",
        "--pid",
        "--mount",
        "--fork",
        "--mount-proc",
        sys.executable,
        str(script),
        *map(str, args),
    ]


def loopback_up() -> None:
    """Bring up `lo`, the only interface of a new network namespace (ioctl: no iproute2 needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def start_cluster(nodes: int = 2, cpus_per_node: int = 1):
    """A `ray.cluster_utils.Cluster` of `nodes` nodes, each with `cpus_per_node` CPUs; the caller
    connects (ray.init(address=cluster.address)) and shuts it down."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home (and no timeout trying)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": cpus_per_node, "include_dashboard": False, "node_ip_address": LOOPBACK},
    )
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus_per_node, node_ip_address=LOOPBACK)
    cluster.wait_for_nodes()
    return cluster


def sandbox_actor_pids() -> list[int]:
    """Processes of the sandbox actors (Ray titles an actor's process `ray::<class>`), in this PID
    namespace only: the script's own cluster."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::SandboxActor"):
                pids.append(int(entry.name))
    return sorted(pids)


def harness_command(*argv: object) -> Sequence[str]:
    """`harness ARGS` as a user types it, with this interpreter."""
    return [sys.executable, "-m", "harness.cli", *map(str, argv)]
