"""Process helpers: a map over chunks inside a partition (where the work is pure-Python CPU), on a
process pool or on the engine that is active (`pipelines.engine`), and whether a process is alive."""

from __future__ import annotations

import contextlib
import contextvars
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
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


# (a map of an engine, or None for the local pool; whether to run inline) for map_chunks
_ACTIVE: contextvars.ContextVar[tuple[Callable | None, bool]] = contextvars.ContextVar("chunk_engine", default=(None, False))


@contextlib.contextmanager
def activate(engine_map: Callable | None, inline: bool = False) -> Iterator[None]:
    """Within the block `map_chunks` sends chunks to `engine_map` (None: the local pool), or runs inline."""
    token = _ACTIVE.set((engine_map, inline))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def map_chunks(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], workers: int, min_items_per_worker: int = 500) -> list[R]:
    """`fn` over contiguous chunks of `items`, results concatenated in order.

    Runs inline when the input is too small for a pool to pay for its start-up, or inside an
    engine task (the engine already keeps every CPU busy with tasks).
    """
    engine_map, inline = _ACTIVE.get()
    workers = 1 if inline else min(workers, len(items) // min_items_per_worker)
    if workers <= 1:
        return fn(items)
    size = -(-len(items) // workers)
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    if engine_map is not None:
        return [r for part in engine_map(fn, chunks) for r in part]
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
