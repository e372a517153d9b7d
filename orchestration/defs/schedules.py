"""Periodic refreshes: catch up crawl partitions never fully curated, re-ingest sources."""


import dagster as dg

from orchestration.partitions import crawl_files


@dg.schedule(job_name="crawl_partition_job", cron_schedule="0 */6 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every 6 hours: re-run ingest + curation for registered crawl files whose curated_web "
                         "was never materialized (e.g. a failed or cancelled run).")
def crawl_refresh_schedule(context: dg.ScheduleEvaluationContext):
    keys = context.instance.get_dynamic_partitions(crawl_files.name)
    done = context.instance.get_materialized_partitions(dg.AssetKey("curated_web"))
    missing = [k for k in keys if k not in done]
    if not missing:
        return dg.SkipReason("every crawl file partition is materialized")
    tick = context.scheduled_execution_time.isoformat()
    return [dg.RunRequest(partition_key=k, run_key=f"refresh:{k}:{tick}") for k in missing]


sources_refresh_schedule = dg.ScheduleDefinition(
    name="sources_refresh_schedule", job_name="sources_ingest_job", cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING, description="Nightly re-ingest of the source corpora.")
