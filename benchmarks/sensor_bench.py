"""Sensor ticks with a whole snapshot registered: the real daemon (`dagster-daemon run`) evaluates every
sensor of the code location against an instance that the crawl-listing sensor fills with a generated
10,000-file listing; tick durations are read back from the instance's tick records.

Runs stay queued (`concurrency.runs.max_concurrent_runs: 0`): this measures the sensors, not ingest.

    python -m benchmarks.sensor_bench [--files 10000] [--seconds 150]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=150)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        home.mkdir()
        settings = yaml.safe_load((ROOT / "dagster.yaml").read_text())
        settings.setdefault("concurrency", {})["runs"] = {"max_concurrent_runs": 0}
        (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
        keys = [f"crawl-data/CC-MAIN-2026-05/segments/{i // 100:04d}/warc/CC-MAIN-2026-05-{i:05d}.warc.gz" for i in range(args.files)]
        (tmp / "warc.paths.gz").write_bytes(gzip.compress(("\n".join(keys) + "\n").encode()))
        (tmp / "crawl").mkdir()
        env = dict(os.environ, DAGSTER_HOME=str(home), LAKE_DIR=str(tmp / "lake"), CRAWL_DIR=str(tmp / "crawl"),
                   CRAWL_LISTING=str(tmp / "warc.paths.gz"), CRAWL_BASE_URL="http://127.0.0.1:9/")
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(args.seconds)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
        os.environ["DAGSTER_HOME"] = str(home)
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            partitions = len(instance.get_dynamic_partitions("crawl_files"))
            queued = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
            print(f"{partitions} crawl_files partitions registered, {queued} runs queued, daemon ran {args.seconds} s\n")
            print("| sensor | ticks | first tick (s) | later ticks, median (s) | slowest (s) | runs requested | last status |")
            print("|---|---|---|---|---|---|---|")
            for name, ticks in sorted(_ticks_by_sensor(instance).items()):
                took = [t.end_timestamp - t.timestamp for t in ticks]
                runs = sum(len(t.run_ids) for t in ticks)
                later = f"{statistics.median(took[1:]):.2f}" if len(took) > 1 else "-"
                print(f"| {name} | {len(ticks)} | {took[0]:.2f} | {later} | {max(took):.2f} | {runs} | {ticks[-1].status.value} |")


def _ticks_by_sensor(instance) -> dict[str, list]:
    """Every finished tick in the instance, by sensor (default-running sensors have no stored state to look them up by)."""
    from dagster._core.scheduler.instigation import TickData
    from dagster._core.storage.schedules.schema import JobTickTable
    from dagster._serdes import deserialize_value

    with instance.schedule_storage.connect() as conn:
        rows = conn.execute(JobTickTable.select()).fetchall()
    out: dict[str, list] = {}
    for row in rows:
        tick = deserialize_value(row.tick_body, TickData)
        if tick.end_timestamp:
            out.setdefault(tick.instigator_name, []).append(tick)
    return {name: sorted(ticks, key=lambda t: t.timestamp) for name, ticks in out.items()}

if __name__ == "__main__":
    main()
