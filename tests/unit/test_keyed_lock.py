"""Per-key serialisation must hold even while locks are being forgotten and recreated."""

from __future__ import annotations

import asyncio

from stratum.keyed_lock import KeyedLocks


async def test_same_key_never_runs_twice_at_once_and_locks_are_dropped() -> None:
    locks = KeyedLocks()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}

    async def work(key: str) -> None:
        async with locks.hold(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            await asyncio.sleep(0)
            inside[key] -= 1

    # waves of arrivals interleaved with releases: the race that a naive
    # "delete the lock when it looks unlocked" loses
    tasks = []
    for _ in range(50):
        tasks += [asyncio.create_task(work("a")), asyncio.create_task(work("b"))]
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert most == {"a": 1, "b": 1}
    assert len(locks) == 0


async def test_a_newcomer_waits_for_a_waiter_woken_by_a_release() -> None:
    """A holds, B waits; A releases and, before B has run, C arrives: C must queue."""
    locks = KeyedLocks()
    release_a = asyncio.Event()
    inside = 0
    most = 0

    async def holder() -> None:
        async with locks.hold("k"):
            await release_a.wait()

    async def work() -> None:
        nonlocal inside, most
        async with locks.hold("k"):
            inside += 1
            most = max(most, inside)
            for _ in range(5):
                await asyncio.sleep(0)
            inside -= 1

    a = asyncio.create_task(holder())
    await asyncio.sleep(0)
    b = asyncio.create_task(work())
    await asyncio.sleep(0)
    release_a.set()
    await asyncio.sleep(0)  # A leaves the lock; B is woken but has not run yet
    c = asyncio.create_task(work())
    await asyncio.gather(a, b, c)
    assert most == 1


async def test_different_keys_run_in_parallel() -> None:
    locks = KeyedLocks()
    both_inside = asyncio.Event()
    count = 0

    async def work(key: str) -> None:
        nonlocal count
        async with locks.hold(key):
            count += 1
            if count == 2:
                both_inside.set()
            await asyncio.wait_for(both_inside.wait(), 2)

    await asyncio.gather(work("x"), work("y"))
