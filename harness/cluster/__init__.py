"""Scale-out on an existing Ray cluster: `--executor ray` and `--data-parallel N`.

execution.py runs programs on sandbox actors, one per node; generation.py runs N replicas of a
backend. Both are used only when asked for: this module stays light (no Ray import), because
harness/run.py imports it and `harness evaluate` must start fast.
"""

from __future__ import annotations

import socket
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.config import RunConfig

INSTALL_HINT = "pip install 'code-harness[ray]'"
PROBE_TIMEOUT_S = 10.0


def ray_installed() -> bool:
    return find_spec("ray") is not None


def uses_ray(config: RunConfig) -> bool:
    """Whether the run needs a Ray cluster (for execution, generation or both)."""
    return config.executor == "ray" or config.data_parallel > 1


def connect(address: str | None = None) -> Any:
    """The `ray` module, connected: to `address`, or (None) to the cluster that `ray.init()` finds
    (RAY_ADDRESS, then the latest cluster started on this machine) or a local one it starts.

    One connection per process: a second call reuses the first."""
    if not ray_installed():
        raise UsageError(f"--executor ray and --data-parallel need Ray, which is not installed: {INSTALL_HINT}")
    import ray

    if ray.is_initialized():
        return ray
    if address:
        _probe(address)
    try:
        # Actors log through the driver's terminal; Ray's own INFO lines would drown the progress bars.
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"at {address}" if address else "(ray.init() found none and could not start one)"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot connect to a Ray cluster {where}: {first_line}") from None
    return ray


def _probe(address: str) -> None:
    """A HOST:PORT that nothing answers on is a UsageError now: ray.init() would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "local" and other forms are ray.init()'s to judge
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's live nodes, each {"node_id", "address", "cpus", "gpus"}, in a stable order."""
    nodes = []
    for node in ray.nodes():
        if node.get("Alive"):
            resources = node.get("Resources", {})
            nodes.append(
                {
                    "node_id": node["NodeID"],
                    "address": node.get("NodeManagerAddress"),
                    "cpus": int(resources.get("CPU", 0)),
                    "gpus": int(resources.get("GPU", 0)),
                }
            )
    return sorted(nodes, key=lambda n: n["node_id"])


def describe_cluster(ray: Any) -> dict[str, Any]:
    """The cluster as config.json's manifest records it."""
    nodes = alive_nodes(ray)
    return {
        "ray": _version("ray"),
        "nodes": len(nodes),
        "cpus": sum(n["cpus"] for n in nodes),
        "gpus": sum(n["gpus"] for n in nodes),
        "node_resources": [{"cpus": n["cpus"], "gpus": n["gpus"]} for n in nodes],
    }


def cluster_manifest(config: RunConfig) -> dict[str, Any] | None:
    """The manifest's `cluster` entry: None for a run on this machine alone (Ray is not imported)."""
    if not uses_ray(config):
        return None
    return {
        "executor": config.executor,
        "data_parallel": config.data_parallel,
        **describe_cluster(connect(config.ray_address)),
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
