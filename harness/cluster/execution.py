"""`--executor ray`: programs run on long-lived sandbox actors, one per node of a Ray cluster.

RayExecutor implements the Sandbox protocol (sandbox/base.py), so harness/execution.py uses it
like any local sandbox and stays the only writer of results.jsonl. Each actor holds a warm pool
of the chosen sandbox (process or docker) on its node. The driver:
- cuts the programs into shards (SHARD_PER_WORKER programs per worker of the actor that takes
  the shard) and keeps at most IN_FLIGHT_PER_ACTOR shards per actor, so memory stays flat for any
  run size (backpressure);
- streams each shard's verdicts back one by one (a Ray streaming generator), so progress is
  cluster-wide and a verdict that came back is never lost;
- when an actor dies mid-shard, sends the shard's unfinished programs to another actor (another
  node where there is one, cut in two so that a program that kills actors ends up alone) and
  starts a new actor on the dead one's node if it still lives; a shard that has killed
  MAX_ATTEMPTS actors gives sandbox_error verdicts (the harness's fault, retried by a re-run)
  instead of hanging the run.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.cluster import alive_nodes, connect
from harness.errors import UsageError
from sandbox.base import SANDBOX_ERROR, Program, Sandbox, Verdict

log = logging.getLogger("harness.cluster")

SHARD_PER_WORKER = 8  # enough to keep an actor's workers busy between round trips, little to redo
IN_FLIGHT_PER_ACTOR = 2  # one running, one queued on the actor: no idle gap between shards
MAX_ATTEMPTS = 3  # actors a shard may see die before its programs are given up as sandbox_error
REPLACEMENTS_PER_NODE = 5  # new actors started on one node before the node is left alone
READY_TIMEOUT_S = 300.0  # a docker pool may pull or start containers for a while
CLOSE_TIMEOUT_S = 30.0

SandboxFactory = Callable[..., Sandbox]  # called as factory(workers=N) on the actor's node


class SandboxActor:
    """One node's sandbox pool (a Ray actor; see _actor_class)."""

    def __init__(self, sandbox: str | SandboxFactory, workers: int) -> None:
        from harness import registry

        self.error = None
        self.pool: Any = None
        try:
            factory = registry.sandboxes.get(sandbox) if isinstance(sandbox, str) else sandbox
            self.pool = factory(workers=workers)
        except UsageError as exc:  # reported by ready(): a failed constructor would only say "died"
            self.error = str(exc)

    def ready(self) -> dict[str, Any]:
        """Where the actor runs, or the error its pool gave."""
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "error": self.error}

    def run(self, programs: Sequence[Program]) -> Iterator[tuple[int, str, str, float]]:
        """The pool's verdicts as plain tuples, each as soon as it is decided."""
        for index, verdict in self.pool.run_batch(programs):
            yield index, verdict.status, verdict.detail, verdict.duration_s

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


@dataclass(eq=False)
class _Actor:
    handle: Any
    node_id: str
    workers: int
    flights: list[_Flight] = field(default_factory=list)  # sent and not finished, in the order they run
    blamed: _Flight | None = None  # once the actor died: the shard it was running then

    @property
    def load(self) -> int:
        return len(self.flights)


@dataclass(eq=False)
class _Shard:
    remaining: list[int]  # indices into the batch's programs still without a verdict
    died_on: set[str] = field(default_factory=set)  # nodes whose actor died running this shard
    failures: int = 0
    last_error: str = ""


@dataclass(eq=False)
class _Flight:
    shard: _Shard
    actor: _Actor
    sent: list[int]  # the indices sent, in the order the actor numbers them


class RayExecutor:
    """Runs programs on sandbox actors across a Ray cluster (the Sandbox protocol)."""

    def __init__(
        self,
        sandbox: str | SandboxFactory = "process",
        workers: int | None = None,
        *,
        address: str | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        """`workers`: programs in parallel per node (None: the node's CPUs, as Ray counts them)."""
        if isinstance(sandbox, str):
            from harness import registry

            registry.sandboxes.get(sandbox)  # an unknown name is a UsageError here, not on every node
        self._ray = connect(address)
        self._sandbox = sandbox
        self._workers = workers
        self._max_attempts = max_attempts
        self._actors: dict[str, _Actor] = {}  # node_id -> its actor
        self._replaced: dict[str, int] = {}
        self._closed = False
        self.stats = {"shards": 0, "retries": 0, "actors_lost": 0, "peak_in_flight": 0}

    @property
    def nodes(self) -> int:
        """Nodes with a sandbox actor (starts them if none runs)."""
        return len(self._ready_actors())

    def run_batch(self, programs: Sequence[Program]) -> Iterator[tuple[int, Verdict]]:
        """Yield (index, verdict) for every program, in completion order across the cluster."""
        if self._closed:
            raise RuntimeError("the executor is closed")
        return self._run_batch(programs)

    def close(self) -> None:
        """Close every actor's pool (nothing a program started outlives it), then end the actors."""
        self._closed = True
        actors, self._actors = list(self._actors.values()), {}
        closing = [a.handle.close.remote() for a in actors]
        if closing:
            self._ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for actor in actors:
            self._ray.kill(actor.handle)

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- actors -----------------------------------------------------------------------------

    def _ready_actors(self) -> list[_Actor]:
        """An actor on every live node with CPUs (new nodes get one), each ready to take work."""
        started = []
        for node in alive_nodes(self._ray):
            if node["cpus"] > 0 and node["node_id"] not in self._actors:
                started.append(self._start_actor(node["node_id"], self._workers or node["cpus"]))
        if started:
            self._await_ready(started)
        if not self._actors:
            raise UsageError("no node of the Ray cluster could start a sandbox actor (see the log above)")
        return list(self._actors.values())

    def _start_actor(self, node_id: str, workers: int) -> _Actor:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # No CPUs reserved: the actor mostly waits on its fork servers, whose programs Ray does not
        # schedule; reserving them would leave a node that runs other work without a sandbox.
        handle = (
            _actor_class(self._ray)
            .options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
            .remote(self._sandbox, workers)
        )
        actor = _Actor(handle, node_id, workers)
        self._actors[node_id] = actor
        return actor

    def _await_ready(self, actors: list[_Actor]) -> None:
        """Keep the actors that come up; one whose pool cannot be made is a UsageError."""
        refs = {a.handle.ready.remote(): a for a in actors}
        done, late = self._ray.wait(list(refs), num_returns=len(refs), timeout=READY_TIMEOUT_S)
        for ref in late:
            log.warning(
                "sandbox actor on node %s did not start in %.0f s; not used", refs[ref].node_id, READY_TIMEOUT_S
            )
            self._drop(refs[ref])
        for ref in done:
            try:
                info = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                log.warning("sandbox actor on node %s failed to start: %s", refs[ref].node_id, _first_line(exc))
                self._drop(refs[ref])
                continue
            if info["error"]:
                for actor in actors:
                    self._drop(actor)
                raise UsageError(info["error"])

    def _drop(self, actor: _Actor) -> None:
        if self._actors.get(actor.node_id) is actor:
            del self._actors[actor.node_id]
        self._ray.kill(actor.handle)

    def _replace(self, actor: _Actor) -> None:
        """After `actor` died: a new one on its node, if the node lives and has not used up its turns."""
        self.stats["actors_lost"] += 1
        self._drop(actor)
        turns = self._replaced.get(actor.node_id, 0)
        alive = {n["node_id"] for n in alive_nodes(self._ray)}
        if actor.node_id in alive and turns < REPLACEMENTS_PER_NODE:
            self._replaced[actor.node_id] = turns + 1
            self._start_actor(actor.node_id, actor.workers)  # calls wait on the actor until it is up

    # --- batches ----------------------------------------------------------------------------

    def _run_batch(self, programs: Sequence[Program]) -> Iterator[tuple[int, Verdict]]:
        self._ready_actors()  # a node that joined since the last batch gets its actor
        fresh = _Pending(len(programs))
        retry: deque[_Shard] = deque()
        flights: dict[Any, _Flight] = {}  # ObjectRefGenerator -> what it runs
        finished = False
        try:
            while True:
                self._dispatch(programs, fresh, retry, flights)
                if not flights:
                    if retry or fresh.left:  # work left, and no actor to take it
                        yield from self._give_up(fresh, retry, "no sandbox actor is left in the Ray cluster")
                    break
                ready, _ = self._ray.wait(list(flights), num_returns=1)
                for generator in ready:
                    yield from self._receive(generator, flights, retry)
            finished = True
        finally:
            if not finished:  # the caller stopped early: the busy actors would run on for nothing
                for flight in flights.values():
                    self._drop(flight.actor)

    def _dispatch(
        self, programs: Sequence[Program], fresh: _Pending, retry: deque[_Shard], flights: dict[Any, _Flight]
    ) -> None:
        """Give each actor work until it has IN_FLIGHT_PER_ACTOR shards: retried shards first."""
        if not self._actors and (retry or fresh.left):
            try:
                self._ready_actors()  # every actor died: the live nodes get new ones
            except UsageError:
                return
        while True:
            idle = [a for a in self._actors.values() if a.load < IN_FLIGHT_PER_ACTOR]
            if not idle:
                break
            actor = min(idle, key=lambda a: a.load)
            shard = self._next_shard(actor, fresh, retry)
            if shard is None:
                break
            sent = list(shard.remaining)
            generator = actor.handle.run.options(num_returns="streaming").remote([programs[i] for i in sent])
            flights[generator] = _Flight(shard, actor, sent)
            actor.flights.append(flights[generator])
            self.stats["shards"] += 1
        self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], len(flights))

    def _next_shard(self, actor: _Actor, fresh: _Pending, retry: deque[_Shard]) -> _Shard | None:
        """A retried shard that has not died on this actor's node (unless it died on every node
        left), else a fresh one sized for the actor."""
        for shard in retry:
            if actor.node_id not in shard.died_on or set(self._actors) <= shard.died_on:
                retry.remove(shard)
                return shard
        indices = fresh.take(SHARD_PER_WORKER * actor.workers)
        return _Shard(indices) if indices else None

    def _receive(
        self, generator: Any, flights: dict[Any, _Flight], retry: deque[_Shard]
    ) -> Iterator[tuple[int, Verdict]]:
        """The next verdict of a shard; at its end, free the actor; if the actor died, retry the rest."""
        flight = flights[generator]
        try:
            ref = next(generator)
            position, status, detail, duration = self._ray.get(ref)
        except StopIteration:
            del flights[generator]
            if flight.shard.remaining:  # the pool owes verdicts: treat as a failure of the actor
                yield from self._failed(flight, "the sandbox actor ended a shard early", retry)
            else:
                flight.actor.flights.remove(flight)
            return
        except self._ray.exceptions.RayError as exc:
            del flights[generator]
            yield from self._failed(flight, _first_line(exc), retry)
            return
        index = flight.sent[position]
        if index in flight.shard.remaining:  # never twice, whatever the actor sends
            flight.shard.remaining.remove(index)
            yield index, Verdict(status, detail, duration)

    def _failed(self, flight: _Flight, error: str, retry: deque[_Shard]) -> Iterator[tuple[int, Verdict]]:
        """The actor running `flight` died (or failed): its unfinished programs go elsewhere, or,
        after MAX_ATTEMPTS deaths, come back as sandbox_error.

        Only the shard the actor was running counts the death against itself: the shards queued
        behind it (the actor runs one at a time, in order) are retried as if they were new."""
        actor, shard = flight.actor, flight.shard
        if actor.blamed is None and actor.flights:
            actor.blamed = actor.flights[0]
        if flight in actor.flights:
            actor.flights.remove(flight)
        if actor.blamed is not flight:
            retry.appendleft(shard)
            return
        shard.failures += 1
        shard.died_on.add(actor.node_id)
        shard.last_error = error
        log.warning(
            "sandbox actor on node %s failed (%s); %d programs to retry",
            flight.actor.node_id,
            error,
            len(shard.remaining),
        )
        if self._actors.get(flight.actor.node_id) is flight.actor:
            self._replace(flight.actor)
        if shard.failures < self._max_attempts:
            self.stats["retries"] += 1
            retry.extend(_halves(shard))
            return
        detail = f"the Ray actor running it died {shard.failures} times: {error}"
        for index in shard.remaining:
            yield index, Verdict(SANDBOX_ERROR, detail[:500])
        shard.remaining = []

    def _give_up(self, fresh: _Pending, retry: deque[_Shard], why: str) -> Iterator[tuple[int, Verdict]]:
        for shard in retry:
            for index in shard.remaining:
                yield index, Verdict(SANDBOX_ERROR, why)
        retry.clear()
        for index in fresh.take(fresh.left):
            yield index, Verdict(SANDBOX_ERROR, why)


def _halves(shard: _Shard) -> list[_Shard]:
    """A shard that killed its actor, in two: a program that kills every actor it reaches ends up
    in a shard of its own, so the programs beside it still get their verdicts."""
    if len(shard.remaining) < 2:
        return [shard]
    middle = len(shard.remaining) // 2
    parts = (shard.remaining[:middle], shard.remaining[middle:])
    return [_Shard(part, set(shard.died_on), shard.failures, shard.last_error) for part in parts]


class _Pending:
    """The indices of a batch not sent yet, handed out in order (never materialised all at once)."""

    def __init__(self, count: int) -> None:
        self.next, self.count = 0, count

    @property
    def left(self) -> int:
        return self.count - self.next

    def take(self, size: int) -> list[int]:
        start, self.next = self.next, min(self.count, self.next + size)
        return list(range(start, self.next))


def _actor_class(ray: Any) -> Any:
    """SandboxActor as a Ray actor class (made once: Ray exports a class per decoration)."""
    global _ACTOR
    if _ACTOR is None:
        _ACTOR = ray.remote(max_restarts=0, max_concurrency=1)(SandboxActor)
    return _ACTOR


_ACTOR: Any = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
