"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

import dagster as dg

from orchestration.assets.curation import curation_assets
from orchestration.assets.ingest import raw_crawl, source_assets
from orchestration.assets.tokens import token_assets
from orchestration.assets.evaluation import evaluation_assets
from orchestration.automation import automation_sensor, run_failure_recorder
from orchestration.assets.training import training_assets
from orchestration.jobs import crawl_partition_job, sources_ingest_job, tokens_job
from orchestration.resources import default_resources
from orchestration.schedules import crawl_refresh_schedule, sources_refresh_schedule
from orchestration.sensors import crawl_file_sensor

defs = dg.Definitions(
    assets=[raw_crawl, *curation_assets, *source_assets, *token_assets, *training_assets, *evaluation_assets],
    jobs=[crawl_partition_job, sources_ingest_job, tokens_job],
    sensors=[crawl_file_sensor, automation_sensor, run_failure_recorder],
    schedules=[crawl_refresh_schedule, sources_refresh_schedule],
    resources=default_resources(),
)
