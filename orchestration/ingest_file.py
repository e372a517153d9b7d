"""`python -m orchestration.ingest_file FILE...`: ingest and curate crawl files without the sensor.

Each FILE (a path inside CRAWL_DIR, absolute or relative to it) is registered as a
`crawl_files` partition in the Dagster instance in DAGSTER_HOME and run through the
`crawl_partition_job` (ingest, dedup, taggers, filter, with their checks), so the runs
show in the web UI exactly as the sensor's would. Exit status 1 if any run failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dagster as dg

from orchestration.definitions import defs
from orchestration.partitions import crawl_files
from pipelines.settings import setting_path


def partition_key(path: str, crawl_dir: Path) -> str:
    """The partition key of a crawl file: its path relative to CRAWL_DIR."""
    full = (crawl_dir / path).resolve()
    if not full.is_relative_to(crawl_dir):
        raise SystemExit(f"{path} is not inside CRAWL_DIR ({crawl_dir}); copy it there or set CRAWL_DIR")
    if not full.is_file():
        raise SystemExit(f"{full} does not exist")
    return full.relative_to(crawl_dir).as_posix()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="crawl files inside CRAWL_DIR")
    args = parser.parse_args(argv)
    crawl_dir = setting_path("CRAWL_DIR")
    keys = [partition_key(f, crawl_dir) for f in args.files]
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(crawl_files.name, [k for k in keys if not instance.has_dynamic_partition(crawl_files.name, k)])
    job = defs.resolve_job_def("crawl_partition_job")
    failed = 0
    for key in keys:
        result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
        status = "ok" if result.success else "FAILED"
        failed += not result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        print(f"{key}: {status} (run {result.run_id}); checks: {checks}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
