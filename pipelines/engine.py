"""Where data-stage work runs: a process pool on this machine (the default) or a Ray cluster.

Two levels of parallel work, both behind one `Engine`:

- across partitions: `run_partitions` runs a stage over many crawl partitions (a Dagster
  backfill run of a partition range), one task per partition: forked processes locally, Ray
  tasks on a cluster. A stage whose partitions depend on each other (dedup) brings its own
  `Stage.run_many`;
- inside a partition: `pipelines.parallel.map_chunks` (taggers) sends its chunks to the engine
  that is active (`Engine.active()`), so a single-partition run on Ray spreads over the cluster.

Tasks run the same stage functions and write the same files, so outputs are byte-identical
whichever engine ran them. A Ray task returns its manifest and log lines to the driver (the
Dagster step), which logs them there.

Ray workers must import this project: on one machine the tests start `ray start --head` from the
project's environment; on a cluster the image has the project installed (docs/PRODUCTION.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipelines.contract import Manifest, Stage, StageContext, param, require
from pipelines.parallel import activate, default_workers

T = TypeVar("T")
R = TypeVar("R")
KINDS = ("local", "ray")
_CONNECTED: dict[str, str | None] = {}  # the Ray address this process is connected to


@dataclass(frozen=True)
class EngineConfig:
    """Which engine runs data-stage tasks (env DATA_ENGINE, RAY_ADDRESS in Dagster's default resources)."""

    kind: str = param("local", "local: forked processes on this machine; ray: tasks on the Ray cluster at ray_address")
    ray_address: str = param("", "the Ray cluster (host:port or 'auto'); empty: RAY_ADDRESS, else a Ray started in-process")
    workers: int = param(0, "local: processes across partitions (0 = CURATION_WORKERS or the cores, max 8)")
    cpus_per_task: float = param(1.0, "ray: CPUs a task reserves (a partition task, or a chunk inside a partition)")

    def __post_init__(self):
        require(self.kind in KINDS, self, "kind", f"one of {KINDS}")
        require(self.cpus_per_task > 0, self, "cpus_per_task", "must be > 0")


def _ray():
    try:
        import ray
    except ImportError as exc:  # ray is an optional dependency (`pip install -e ".[ray]"`)
        raise RuntimeError("DATA_ENGINE=ray needs Ray: pip install -e '.[ray]' (or DATA_ENGINE=local)") from exc
    return ray


class Engine:
    def __init__(self, config: EngineConfig = EngineConfig()):
        self.config = config

    @property
    def is_ray(self) -> bool:
        return self.config.kind == "ray"

    def _connect(self):
        """This process's Ray connection to the configured cluster (re-connected if it points elsewhere)."""
        ray = _ray()
        address = self.config.ray_address or os.environ.get("RAY_ADDRESS") or None
        if ray.is_initialized() and _CONNECTED.get("address") != address:
            ray.shutdown()
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, configure_logging=False)
            _CONNECTED["address"] = address
        return ray

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` over `items` as parallel tasks, results in order; inline when there is one item."""
        if len(items) <= 1 and not self.is_ray:
            return [fn(x) for x in items]
        if self.is_ray:
            ray = self._connect()
            task = ray.remote(num_cpus=self.config.cpus_per_task)(_in_task)
            return ray.get([task.remote(fn, x) for x in items])
        workers = min(self.config.workers or default_workers(), len(items))
        if workers <= 1:
            return [fn(x) for x in items]
        token = uuid.uuid4().hex
        _FORKED[token] = fn  # forked workers inherit it: stage functions need not pickle (taggers hold lambdas)
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
                return list(pool.map(_forked_task, [token] * len(items), items))
        finally:
            del _FORKED[token]

    def describe(self, tasks: int) -> str:
        """Where `tasks` tasks are about to run, for the run's log."""
        if self.is_ray:
            ray = self._connect()
            address = self.config.ray_address or os.environ.get("RAY_ADDRESS") or ray.get_runtime_context().gcs_address
            return (f"{tasks} Ray tasks on the cluster at {address} "
                    f"({ray.cluster_resources().get('CPU', 0):g} CPUs, {self.config.cpus_per_task:g} per task)")
        return f"{tasks} tasks on a pool of {min(self.config.workers or default_workers(), tasks)} local processes"

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this engine the one `map_chunks` uses inside a partition (a local engine keeps the process pool)."""
        with activate(self.map if self.is_ray else None):
            yield


_FORKED: dict[str, Callable] = {}


def _forked_task(token: str, item: T) -> R:
    return _in_task(_FORKED[token], item)


def _in_task(fn: Callable[[T], R], item: T) -> R:
    """A task's body: chunks inside it run inline (the engine already spreads the tasks over the CPUs)."""
    with activate(None, inline=True):
        return fn(item)


def run_partitions(stage: Stage, ctxs: list[StageContext], config: Any, engine: Engine) -> list[Manifest]:
    """`stage` over every context's partition on `engine`; manifests in the contexts' order.

    What tasks run elsewhere logged is replayed through the first context's `log` when they finish.
    """
    if stage.run_many is not None:
        with engine.active():
            return stage.run_many(ctxs, config, engine)
    if len(ctxs) == 1:
        with engine.active():
            return [stage.run(ctxs[0], config)]
    driver_log = ctxs[0].log
    driver_log(f"{stage.name}: {engine.describe(len(ctxs))}")
    plain = [dataclasses.replace(c, log=print, warn=print) for c in ctxs]  # the driver's loggers do not cross processes
    results = engine.map(_PartitionTask(stage, config), plain)
    manifests = []
    for ctx, (manifest, lines) in zip(ctxs, results, strict=True):
        for line in lines:
            driver_log(f"[{ctx.partition}] {line}")
        manifests.append(manifest)
    return manifests


@dataclass(frozen=True)
class _PartitionTask:
    """A picklable `ctx -> (manifest, log lines)` for one stage and config."""

    stage: Stage
    config: Any

    def __call__(self, ctx: StageContext) -> tuple[Manifest, list[str]]:
        lines: list[str] = []
        ctx = dataclasses.replace(ctx, log=lines.append, warn=lambda m: lines.append(f"WARNING: {m}"))
        return self.stage.run(ctx, self.config), lines


@contextlib.contextmanager
def local_ray_cluster(num_cpus: int, port: int, timeout_s: float = 120) -> Iterator[str]:
    """A one-node Ray cluster (`ray start --head` on 127.0.0.1) for development, tests and benchmarks; yields
    its address and stops it (its process group) on exit. A real cluster is started by KubeRay or `ray up`."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths live under it
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while subprocess.run([ray_cli, "status", f"--address={address}"], capture_output=True).returncode != 0:
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head did not come up on {address} (exit {head.poll()})")
            time.sleep(1)
        yield address
    finally:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the cluster's processes on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
