"""Ingest assets: one `raw_crawl` partition per crawl file, one asset per other source."""

import dagster as dg

from orchestration.automation import NIGHTLY_FRESHNESS
from orchestration.factory import assets_only, stage_assets
from orchestration.metadata import ingest_metadata
from orchestration.partitions import crawl_backfill_policy, crawl_files
from pipelines.ingest import RAW_CRAWL, SOURCE_STAGES

raw_crawl_defs = stage_assets(RAW_CRAWL, group="ingest", partitions_def=crawl_files, kinds={"python", "parquet"},
                              metadata=ingest_metadata, write_catalog=True,
                              backfill_policy=crawl_backfill_policy,
                              retry_policy=dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL))
raw_crawl = raw_crawl_defs[0]
source_defs = [d for stage in SOURCE_STAGES
               for d in stage_assets(stage, group="ingest", kinds={"python", "parquet"}, metadata=ingest_metadata,
                                     write_catalog=True, freshness_policy=NIGHTLY_FRESHNESS)]
source_assets = assets_only(source_defs)
