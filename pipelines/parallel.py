"""Process helpers: a pool map over chunks (inside a partition, where the work is pure-Python CPU),
and whether a process is alive."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """CURATION_WORKERS if set, else the cores this process may use (capped at 8)."""
    env = os.environ.get("CURATION_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(8, len(os.sched_getaffinity(0))))


def map_chunks(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], workers: int, min_items_per_worker: int = 500) -> list[R]:
    """`fn` over contiguous chunks of `items`, results concatenated in order.

    Runs inline when the input is too small for a pool to pay for its start-up.
    """
    workers = min(workers, len(items) // min_items_per_worker)
    if workers <= 1:
        return fn(items)
    size = -(-len(items) // workers)
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
        return [r for part in pool.map(fn, chunks) for r in part]


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running (not zombie) process on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
