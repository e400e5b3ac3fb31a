"""The controller's long-running tasks beside the loop: following the partitions a
replica owns, asking Resource Graph again, reloading policies, tuning the garbage
collector, and stopping all of it in order (:func:`run_until_stopped`)."""

from __future__ import annotations

import gc
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
import structlog

from controller.policy.loader import policy_files
from controller.runtime import Runtime

log = structlog.get_logger("remediator.runtime")


async def follow_partitions(runtime: Runtime) -> None:
    """Run the targets of the partitions this replica owns: every retry period (wall
    time, as the leases are), a change of ``owned()`` applies the targets again. Runs
    until cancelled."""
    owner = runtime.owner
    assert owner is not None
    logs = runtime.partition_logs
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        closing: set[int] = set()
        while True:
            owned = owner.owned()
            runtime.metrics.partitions_owned.set(len(owned))
            # a log still held by another writer is tried again each retry period
            waiting = logs is not None and bool(set(owned) - logs.opened())
            if owned != seen or waiting:
                if owned != seen:
                    log.info("partitions owned", identity=owner.identity, partitions=owned)
                seen = owned
                runtime.apply_targets()
            for partition in set(runtime.closing) - closing:
                closing.add(partition)

                async def close(partition: int = partition) -> None:
                    await runtime.close_lost(partition)
                    closing.discard(partition)

                tg.start_soon(close)
            await anyio.sleep(runtime.settings.shards.retry_period.total_seconds())


async def run_until_stopped(runtime: Runtime, stop: Callable[[], Awaitable[object]]) -> None:
    """Run the controller until ``stop`` returns (a signal), then stop in order: the
    targets end (an action in flight finishes; shielded, up to the action deadline),
    the replica leaves its partitions (:meth:`Runtime.leave`: a ``budget`` line in each,
    its log closed), and only then are the partitions' leases (and the leader's)
    released. Cancelled from outside, it stops in the same order."""
    leases = anyio.CancelScope(shield=True)  # let go last, by this function alone

    async def hold() -> None:
        with leases:
            async with anyio.create_task_group() as tg:
                if runtime.elector is not None:
                    tg.start_soon(runtime.elector.run)
                if runtime.owner is not None:  # shards: claim partitions, keep their leases
                    tg.start_soon(runtime.owner.run)

    async with anyio.create_task_group() as outer:
        outer.start_soon(hold)
        try:
            async with anyio.create_task_group() as work:

                async def stopping() -> None:
                    await stop()
                    work.cancel_scope.cancel()

                work.start_soon(stopping)
                if runtime.owner is not None:  # run the owned partitions' targets
                    work.start_soon(follow_partitions, runtime)
                if runtime.escalator is not None:
                    work.start_soon(runtime.escalator.run)
                work.start_soon(watch_policies, runtime)  # SIGHUP or a changed file: reload
                work.start_soon(keep_discovering, runtime)  # selectors ask Resource Graph again
                work.start_soon(tune_garbage_collection, runtime)
                await runtime.loop.run()
        finally:
            try:
                await runtime.leave(runtime.settings.action_deadline.total_seconds())
            finally:
                leases.cancel()


async def keep_discovering(runtime: Runtime) -> None:
    """Ask Resource Graph again every ``discoveryInterval`` of the runtime's clock (a
    reload or SIGHUP asks at once too). Runs until cancelled."""
    every = runtime.settings.discovery_interval.total_seconds()
    while True:
        await runtime.clock.sleep(every)
        if any(item.policy.target.is_selector for item in runtime.policies):
            await runtime.discover()


# Allocations between young collections (Python's default: 700). A pass's objects live
# for the pass; at 700 many are collected young several times and pushed to the old
# generations, where only a full collection frees them.
YOUNG_COLLECTION_EVERY = 10_000


async def tune_garbage_collection(runtime: Runtime, intervals: int = 10) -> None:
    """Keep the cyclic collector off the objects every target holds for good (its policy,
    reconciler, task, metric series), and collect a pass's garbage young. Runs until
    cancelled.

    A full collection walks every tracked object: at 10,000 targets over a million,
    ~0.5 s of CPU, a few times a minute, for garbage that is almost all a pass's (a
    fifth of the controller's CPU). Frozen once every target has passed (one interval
    in), a full collection walks only what was made since. Every ``intervals``
    intervals all is unfrozen, collected and frozen again, so what a reload or a
    removed target left behind is still freed."""
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    every = runtime.settings.interval.total_seconds()
    await runtime.clock.sleep(every * 1.2)  # every target's first pass, jitter included
    while True:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        await runtime.clock.sleep(every * intervals)


def fingerprint(paths: Sequence[Path]) -> tuple[tuple[str, float, int], ...]:
    """What the policy files look like on disk: a change to any of them changes this."""
    files = []
    for path in policy_files(paths):
        try:
            stat = path.stat()
        except OSError:
            continue
        files.append((str(path), stat.st_mtime, stat.st_size))
    return tuple(sorted(files))


async def watch_policies(runtime: Runtime, every: float = 10.0) -> None:
    """Reload the policies on SIGHUP, or when their files change (checked every ``every``
    seconds of the runtime's clock). Runs until cancelled."""
    seen = fingerprint(runtime.settings.policies)

    async def on_change() -> None:
        nonlocal seen
        while True:
            await runtime.clock.sleep(every)
            now = fingerprint(runtime.settings.policies)
            if now != seen:
                seen = now
                await runtime.reload()

    async def on_hangup() -> None:
        with anyio.open_signal_receiver(signal.SIGHUP) as hangups:
            async for _ in hangups:
                await runtime.reload()

    async with anyio.create_task_group() as tg:
        tg.start_soon(on_change)
        if hasattr(signal, "SIGHUP"):
            tg.start_soon(on_hangup)
