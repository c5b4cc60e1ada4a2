"""`--data-parallel N`: N replicas of the backend as Ray actors, batches shared among them.

DataParallelBackend implements the Backend protocol (harness/backends/base.py), so harness/run.py
writes samples.jsonl exactly as with one backend. The batches come planned, each with its own
seed (harness.run.plan_batches), and a batch's samples depend on the batch alone: whichever
replica generates it, the hf backend gives the same samples as a single replica would. Batches go
to whichever replica is free, and come back in the plan's order, so samples.jsonl has a
deterministic order; at most WINDOW_PER_REPLICA batches per replica are sent ahead of the one
due next, so memory stays flat. A batch whose replica dies is sent to another (MAX_ATTEMPTS in
all); without replicas left, the run stops with its finished samples saved (a re-run resumes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from harness.backends.base import Batch, Generation
from harness.cluster import alive_nodes, connect
from harness.config import RunConfig, Sampling
from harness.errors import UsageError

WINDOW_PER_REPLICA = 2  # batches sent per replica beyond the one due next: one running, one queued
MAX_ATTEMPTS = 3
Outputs = list[tuple[Batch, list[list[Generation]]]]


class BackendReplica:
    """One replica: the real backend, built from the RunConfig on the replica's node (a Ray actor)."""

    def __init__(self, config: RunConfig) -> None:
        from harness import registry

        self.error = None
        self.backend: Any = None
        try:
            self.backend = registry.backends.get(config.backend)(config)
        except UsageError as exc:  # reported by info(): a failed constructor would only say "died"
            self.error = str(exc)

    def info(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        return {
            "error": None,
            "has_chat_template": self.backend.has_chat_template,
            "independent_requests": getattr(self.backend, "independent_requests", False),
            "describe": self.backend.describe(),
        }

    def generate(self, batch: Batch, sampling: Sampling, stop: Sequence[str], chat: bool) -> Outputs | str:
        """The batch's (batch, outputs) pairs (a backend may split a batch), or a UsageError's message."""
        try:
            return list(self.backend.generate([batch], sampling, stop, chat))
        except UsageError as exc:
            return str(exc)

    def switch(self, model: str) -> bool:
        switch = getattr(self.backend, "switch", None)
        return bool(switch is not None and switch(model))

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


class DataParallelBackend:
    """config.data_parallel replicas of config.backend on a Ray cluster (the Backend protocol)."""

    def __init__(self, config: RunConfig) -> None:
        self._ray = connect(config.ray_address)
        gpus = _gpus_per_replica(config, self._ray)
        _check_feasible(gpus, alive_nodes(self._ray))
        options = {"num_cpus": 1, "num_gpus": gpus, "scheduling_strategy": "SPREAD"}
        actor_class = self._ray.remote(max_restarts=0, max_concurrency=1)(BackendReplica)
        self._replicas = [actor_class.options(**options).remote(config) for _ in range(config.data_parallel)]
        self._info = self._first_info()
        self.independent_requests = self._info["independent_requests"]

    def _first_info(self) -> dict[str, Any]:
        """Replica 0's answers (every replica loads the same checkpoint); a UsageError of any is raised."""
        try:
            infos = self._ray.get([r.info.remote() for r in self._replicas])
        except self._ray.exceptions.RayError as exc:
            self.close()
            raise RuntimeError(f"a data-parallel replica failed to start: {exc}") from None
        for info in infos:
            if info["error"]:
                self.close()
                raise UsageError(info["error"])
        return infos[0]

    @property
    def has_chat_template(self) -> bool:
        return self._info["has_chat_template"]

    def describe(self) -> dict[str, Any]:
        return {**self._info["describe"], "data_parallel": len(self._replicas)}

    def switch(self, model: str) -> bool:
        """Swap the adapter on every replica; False (the caller loads anew) unless all could."""
        return all(self._ray.get([r.switch.remote(model) for r in self._replicas]))

    def close(self) -> None:
        """Free the replicas' models and end the actors."""
        replicas, self._replicas = self._replicas, []
        if replicas:
            self._ray.wait([r.close.remote() for r in replicas], num_returns=len(replicas), timeout=60)
        for replica in replicas:
            self._ray.kill(replica)

    def generate(
        self, batches: Iterable[Batch], sampling: Sampling, stop: Sequence[str], chat: bool
    ) -> Iterator[tuple[Batch, list[list[Generation]]]]:
        """Yield each batch's outputs in the order of `batches`, whichever replica made them."""
        plan = list(batches)
        done: dict[int, Outputs] = {}  # position in the plan -> outputs, until its turn comes
        sent: dict[Any, tuple[int, Any]] = {}  # ObjectRef -> (position, replica)
        attempts = [0] * len(plan)
        todo = list(range(len(plan)))[::-1]  # a stack: the next position on top
        due = 0
        try:
            while due < len(plan):
                self._send(plan, todo, due, sent, attempts, sampling, stop, chat)
                ready, _ = self._ray.wait(list(sent), num_returns=1)
                position, replica = sent.pop(ready[0])
                outputs = self._outputs(ready[0], position, replica, todo, attempts)
                if outputs is not None:
                    done[position] = outputs
                while due in done:
                    yield from done.pop(due)
                    due += 1
        finally:
            for ref in sent:  # the caller stopped early: the queued batches are not needed
                self._ray.cancel(ref)

    def _send(
        self,
        plan: list[Batch],
        todo: list[int],
        due: int,
        sent: dict[Any, tuple[int, Any]],
        attempts: list[int],
        sampling: Sampling,
        stop: Sequence[str],
        chat: bool,
    ) -> None:
        """Keep every replica busy, never more than WINDOW_PER_REPLICA batches per replica ahead."""
        if not self._replicas:
            raise RuntimeError("every data-parallel replica died; finished samples are saved, run again to resume")
        window = WINDOW_PER_REPLICA * len(self._replicas)
        load = {id(r): 0 for r in self._replicas}
        for _, replica in sent.values():
            load[id(replica)] = load.get(id(replica), 0) + 1
        while todo and todo[-1] < due + window:
            replica = min(self._replicas, key=lambda r: load[id(r)])
            if load[id(replica)] >= WINDOW_PER_REPLICA:
                break
            position = todo.pop()
            attempts[position] += 1
            sent[replica.generate.remote(plan[position], sampling, stop, chat)] = (position, replica)
            load[id(replica)] += 1

    def _outputs(self, ref: Any, position: int, replica: Any, todo: list[int], attempts: list[int]) -> Outputs | None:
        """The batch's outputs; None (and the batch back on the stack) if its replica died."""
        try:
            outputs = self._ray.get(ref)
        except self._ray.exceptions.RayActorError as exc:
            if replica in self._replicas:
                self._replicas.remove(replica)  # loading a model again could take minutes: go on without it
            if attempts[position] >= MAX_ATTEMPTS:
                raise RuntimeError(f"batch {position} killed {MAX_ATTEMPTS} replicas; last: {exc}") from None
            todo.append(position)
            todo.sort(reverse=True)
            return None
        if isinstance(outputs, str):
            raise UsageError(outputs)
        return outputs


def _gpus_per_replica(config: RunConfig, ray: Any) -> float:
    """vllm: tensor_parallel_size GPUs; hf: one GPU where it asks for CUDA (auto: where the cluster
    has GPUs), none on a CPU; openai: none (the server has them)."""
    if config.backend == "vllm":
        return getattr(config, "tensor_parallel_size", None) or 1
    if config.backend == "hf":
        if config.device.startswith("cuda"):
            return 1
        if config.device == "auto":
            return 1 if any(node["gpus"] for node in alive_nodes(ray)) else 0
    return 0


def _check_feasible(gpus: float, nodes: list[dict[str, Any]]) -> None:
    """A replica that no node can host would wait for one forever: say so now."""
    if not any(node["cpus"] >= 1 and node["gpus"] >= gpus for node in nodes):
        most = max((node["gpus"] for node in nodes), default=0)
        raise UsageError(
            f"each --data-parallel replica needs 1 CPU and {gpus:g} GPU(s), and no node of the Ray cluster has "
            f"them (the most GPUs on one node: {most})"
        )
