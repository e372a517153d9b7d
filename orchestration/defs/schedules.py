"""Periodic refreshes: catch up crawl partitions never fully curated, re-ingest sources."""


import dagster as dg

from orchestration.partitions import crawl_files

ENDED_UNFINISHED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _partitions_of_runs(instance: dg.DagsterInstance, statuses: list[dg.DagsterRunStatus]) -> set[str]:
    records = instance.get_run_records(dg.RunsFilter(statuses=statuses))
    return {r.dagster_run.tags["dagster/partition"] for r in records if "dagster/partition" in r.dagster_run.tags}


@dg.schedule(job_name="crawl_partition_job", cron_schedule="0 */6 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every 6 hours: re-run ingest + curation for registered crawl files whose run failed or was "
                         "cancelled and whose curated_web is still missing (files never run are the sensors' to request).")
def crawl_refresh_schedule(context: dg.ScheduleEvaluationContext):
    instance = context.instance
    registered = set(instance.get_dynamic_partitions(crawl_files.name))
    done = instance.get_materialized_partitions(dg.AssetKey("curated_web"))
    missing = sorted((_partitions_of_runs(instance, ENDED_UNFINISHED) & registered) - done - _partitions_of_runs(instance, ACTIVE))
    if not missing:
        return dg.SkipReason("no registered crawl file has a failed or cancelled run without a curated_web since")
    tick = context.scheduled_execution_time.isoformat()
    return [dg.RunRequest(partition_key=k, run_key=f"refresh:{k}:{tick}") for k in missing]


sources_refresh_schedule = dg.ScheduleDefinition(
    name="sources_refresh_schedule", job_name="sources_ingest_job", cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING, description="Nightly re-ingest of the source corpora.")
