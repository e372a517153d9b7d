"""Sensors: new or changed crawl files become partition runs; dedup decisions that point at vanished
survivors are repaired; new rankings and A/B verdicts in Label Studio refresh
`human_preferences` and `human_review`; automation conditions are evaluated; failed and dead
runs are handled.

The crawl-directory sensor treats a crawl file as a versioned input. A file is added once its
size stopped changing between two ticks (or it is older than `SETTLE_SECONDS`), so a WARC
still being copied is not ingested half way; a registered file whose size or mtime changes
(replaced under the same name, or a stalled copy that resumed) is re-ingested, with its
curation, once it settles again. The cursor holds the sizes of pending files, the (size,
mtime) each registered file was last requested with, and the hidden files already reported.
"""

import json
import time
from pathlib import Path

import dagster as dg
import xxhash

from orchestration.partitions import crawl_files
from orchestration.resources import InputsResource, LakeResource
from pipelines.ingest.warc import WARC_SUFFIXES, is_crawl_file
from pipelines.parallel import process_alive
from training.feedback import label_studio_client

SETTLE_SECONDS = 30
INVALID_KEY_PARTS = ("...", "\n", "\r", "\t", "\0")


def list_crawl_files(crawl_dir: Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """({relative path: (size, mtime_ns)} of every WARC/WET file below `crawl_dir`, hidden ones skipped)."""
    if not crawl_dir.is_dir():
        return {}, []
    files, hidden = {}, []
    for p in crawl_dir.rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(crawl_dir).as_posix()
        if is_crawl_file(p):
            st = p.stat()
            files[rel] = (st.st_size, st.st_mtime_ns)
        elif p.name.startswith(".") and p.name.endswith(WARC_SUFFIXES):
            hidden.append(rel)
    return files, sorted(hidden)


def _read_cursor(raw: str | None) -> tuple[dict, dict, set]:
    data = json.loads(raw) if raw else {}
    if data and not {"pending", "seen", "hidden"} & set(data):  # an older cursor: the sizes of pending files
        data = {"pending": data}
    return data.get("pending", {}), data.get("seen", {}), set(data.get("hidden", []))


@dg.sensor(job_name="crawl_partition_job", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches CRAWL_DIR; each new, fully written WARC/WET file becomes a `crawl_files` partition and a run; "
                       "a registered file that changed (replaced, or grew after a stall) is re-ingested.")
def crawl_file_sensor(context: dg.SensorEvaluationContext, inputs: InputsResource):
    crawl_dir = inputs.crawl_path
    if not crawl_dir.is_dir():
        return dg.SkipReason(f"CRAWL_DIR {crawl_dir} does not exist; set CRAWL_DIR or create it")
    pending, seen, reported = _read_cursor(context.cursor)
    known = set(context.instance.get_dynamic_partitions(crawl_files.name))
    now_ns = time.time_ns()
    files, hidden = list_crawl_files(crawl_dir)
    for rel in sorted(set(hidden) - reported):
        context.log.warning(f"not ingesting hidden file {rel!r} (a name starting with '.' marks a file being written); "
                            "rename it without the dot to ingest it")
    new, changed, still_pending = [], [], {}
    for rel, (size, mtime_ns) in sorted(files.items()):
        if any(bad in rel for bad in INVALID_KEY_PARTS):
            context.log.warning(f"skipping {rel!r}: its name cannot be a partition key; rename it")
            continue
        version = [size, mtime_ns]
        if rel in known and seen.get(rel, version) == version:
            seen[rel] = version
            continue
        if now_ns - mtime_ns < SETTLE_SECONDS * 1_000_000_000 and pending.get(rel) != size:
            still_pending[rel] = size
            continue
        (changed if rel in known else new).append(rel)
        seen[rel] = version
    context.update_cursor(json.dumps({"pending": still_pending, "seen": seen, "hidden": hidden}, sort_keys=True))
    if not new and not changed:
        waiting = f"; {len(still_pending)} file(s) still being written" if still_pending else ""
        waiting += f"; {len(hidden)} hidden file(s) not ingested: {hidden[:3]}" if hidden else ""
        return dg.SkipReason(f"no new or changed crawl files in {crawl_dir}{waiting}")
    if new:
        context.log.info(f"adding {len(new)} crawl file partition(s): {new[:5]}{'...' if len(new) > 5 else ''}")
    for rel in changed:
        context.log.warning(f"{rel} changed since it was ingested (size/mtime {seen[rel]}): re-ingesting it and its curation")
    requests = [dg.RunRequest(partition_key=rel, run_key=f"ingest:{rel}") for rel in new]
    requests += [dg.RunRequest(partition_key=rel, run_key=f"reingest:{rel}:{seen[rel][0]}:{seen[rel][1]}") for rel in changed]
    return dg.SensorResult(run_requests=requests,
                           dynamic_partitions_requests=[crawl_files.build_add_request(new)] if new else [])


RUNS_PER_TICK = 15  # the daemon spends ~0.4 s creating a run (2 cores): a tick stays ~6 s, the rest follow later


@dg.sensor(job_name="crawl_partition_job", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Reads CRAWL_LISTING (a snapshot's warc.paths.gz, sampled by CRAWL_SAMPLE): registers every listed file "
                       f"as a `crawl_files` partition at once and requests their ingest runs, {RUNS_PER_TICK} a tick.")
def crawl_listing_sensor(context: dg.SensorEvaluationContext, inputs: InputsResource):
    listing = inputs.listing
    if listing is None:
        return dg.SkipReason("CRAWL_LISTING is not set: no crawl snapshot listing to read")
    paths = listing.paths()
    bad = {p for p in paths if any(part in p for part in INVALID_KEY_PARTS)}
    if bad:
        context.log.warning(f"skipping {len(bad)} listed path(s) that cannot be partition keys, e.g. {min(bad)!r}")
        paths = [p for p in paths if p not in bad]
    known = set(context.instance.get_dynamic_partitions(crawl_files.name))
    new = [p for p in paths if p not in known]
    state = json.loads(context.cursor) if context.cursor else {}
    listed = xxhash.xxh3_64_hexdigest("\n".join(paths).encode())
    start = state.get("next", 0) if state.get("listing") == listed else 0  # another listing or sample: start over
    batch = paths[start:start + RUNS_PER_TICK]
    context.update_cursor(json.dumps({"listing": listed, "next": start + len(batch)}))
    if not batch and not new:
        return dg.SkipReason(f"all {len(paths)} listed crawl files have had their runs requested")
    if new:  # one bulk insert: as a SensorResult request, the daemon checks each key on its own (20 s for 10,000)
        context.instance.add_dynamic_partitions(crawl_files.name, new)
        context.log.info(f"registered {len(new)} crawl file partition(s) from {listing.listing}")
    # run keys are per sensor: a file whose run was already requested (a restarted listing) is not run twice
    return dg.SensorResult(run_requests=[dg.RunRequest(partition_key=p, run_key=f"ingest:{p}") for p in batch])


@dg.sensor(job_name="crawl_partition_job", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="When a re-ingested crawl file no longer holds documents that later files were deduplicated "
                       "against, re-runs those later files so their duplicates are decided again.")
def dedup_repair_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    requests = []
    for manifest in lake.lake.manifests("deduped"):
        for partition in manifest.get("repair_partitions", []):
            requests.append(dg.RunRequest(partition_key=partition,
                                          run_key=f"repair:{partition}:{manifest['partition']}:{manifest['content_hash']}"))
    if not requests:
        return dg.SkipReason("no dedup decision points at a vanished survivor")
    return requests


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


def annotation_sensor(name: str, tasks_asset: str, target: str, what: str) -> dg.SensorDefinition:
    """A sensor on the Label Studio project that `tasks_asset` created: new annotations there materialize `target`."""

    @dg.sensor(name=name, asset_selection=[target], minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Watches the Label Studio project of `{tasks_asset}` (LABEL_STUDIO_URL): when people submitted new "
                           f"{what}, materializes `{target}`.")
    def watch(context: dg.SensorEvaluationContext, lake: LakeResource):
        client = label_studio_client()
        if client is None:
            return dg.SkipReason("LABEL_STUDIO_URL is not set: no annotation server to watch")
        project = lake.lake.read_manifest(tasks_asset).get("label_studio") if lake.lake.has_manifest(tasks_asset) else None
        if not project:
            return dg.SkipReason(f"no Label Studio project yet: materialize {tasks_asset} with LABEL_STUDIO_URL set")
        annotations = client.project(project["project_id"])["total_annotations_number"]
        seen = json.loads(context.cursor) if context.cursor else {}
        key = str(project["project_id"])
        if annotations <= seen.get(key, 0):
            return dg.SkipReason(f"no new {what} in {project['project_url']} ({annotations} so far)")
        context.update_cursor(json.dumps(dict(seen, **{key: annotations})))
        return dg.RunRequest(run_key=f"{target}:{key}:{annotations}")

    return watch


human_rankings_sensor = annotation_sensor("human_rankings_sensor", "ranking_tasks", "human_preferences", "rankings")
human_review_sensor = annotation_sensor("human_review_sensor", "review_tasks", "human_review", "A/B verdicts")
