"""Sensors: new crawl files become partitions and runs; automation conditions are evaluated; failed
runs are recorded.

The crawl-directory sensor:

A file is added once its size has stopped changing between two ticks (or it is
older than `SETTLE_SECONDS`), so a WARC still being copied is never ingested half
way. The cursor holds the sizes of such pending files.
"""


import json
import os
import time
from pathlib import Path

import dagster as dg

from orchestration.partitions import crawl_files
from orchestration.resources import InputsResource, LakeResource
from pipelines.ingest.warc import is_crawl_file

SETTLE_SECONDS = 30
INVALID_KEY_PARTS = ("...", "\n", "\r", "\t", "\0")


def list_crawl_files(crawl_dir: Path) -> dict[str, tuple[int, float]]:
    """{relative path: (size, mtime)} for every WARC/WET file below `crawl_dir`."""
    if not crawl_dir.is_dir():
        return {}
    out = {}
    for p in crawl_dir.rglob("*"):
        if p.is_file() and is_crawl_file(p):
            st = p.stat()
            out[p.relative_to(crawl_dir).as_posix()] = (st.st_size, st.st_mtime)
    return out


@dg.sensor(job_name="crawl_partition_job", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches CRAWL_DIR; each new, fully written WARC/WET file becomes a `crawl_files` partition and a run.")
def crawl_file_sensor(context: dg.SensorEvaluationContext, inputs: InputsResource):
    crawl_dir = inputs.crawl_path
    if not crawl_dir.is_dir():
        return dg.SkipReason(f"CRAWL_DIR {crawl_dir} does not exist; set CRAWL_DIR or create it")
    pending: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(crawl_files.name))
    now = time.time()
    ready, still_pending = [], {}
    for rel, (size, mtime) in sorted(list_crawl_files(crawl_dir).items()):
        if rel in known:
            continue
        if any(bad in rel for bad in INVALID_KEY_PARTS):
            context.log.warning(f"skipping {rel!r}: its name cannot be a partition key; rename it")
            continue
        if now - mtime >= SETTLE_SECONDS or pending.get(rel) == size:
            ready.append(rel)
        else:
            still_pending[rel] = size
    context.update_cursor(json.dumps(still_pending, sort_keys=True))
    if not ready:
        waiting = f"; {len(still_pending)} file(s) still being written" if still_pending else ""
        return dg.SkipReason(f"no new crawl files in {crawl_dir}{waiting}")
    context.log.info(f"adding {len(ready)} crawl file partition(s): {ready[:5]}{'...' if len(ready) > 5 else ''}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=rel, run_key=f"ingest:{rel}") for rel in ready],
        dynamic_partitions_requests=[crawl_files.build_add_request(ready)],
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60, description="Evaluates every asset's AutomationCondition (running by default).")


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Records every failed run in lake/run_failures.jsonl (run, job, step errors).")
def run_failure_recorder(context: dg.RunFailureSensorContext, lake: LakeResource) -> None:
    record = {"time": time.time(), "run_id": context.dagster_run.run_id, "job": context.dagster_run.job_name,
              "tags": {k: v for k, v in context.dagster_run.tags.items() if k.startswith("dagster/partition")},
              "error": context.failure_event.message,
              "step_errors": [f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
                              for e in context.get_step_failure_events()]}
    path = lake.lake.run_failures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    context.log.info(f"recorded failed run {record['run_id']} in {path}")


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


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Fails runs whose process died on this machine (SIGKILL, OOM) and frees their pool slots, so later "
                       "dedup and training runs do not wait for them forever.")
def dead_run_reaper(context: dg.SensorEvaluationContext):
    instance = context.instance
    reaped = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        starts = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START).records
        pid = starts[0].event_log_entry.dagster_event.pid if starts else None
        if pid is None or process_alive(pid):
            continue
        instance.report_run_failed(run, f"the run's process (pid {pid}) is gone (killed or out of memory); "
                                        "its pool slots were freed. Re-run it: training resumes from its last state.")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run.run_id)
    if not reaped:
        return dg.SkipReason("no dead runs")
    context.log.warning(f"failed {len(reaped)} dead run(s) and freed their pool slots: {reaped}")
    return dg.SkipReason(f"reaped {len(reaped)} dead run(s)")
