"""Jobs the sensor and schedules launch."""

import dagster as dg

from orchestration.assets.curation import curation_assets
from orchestration.assets.ingest import raw_crawl, source_assets

crawl_partition_job = dg.define_asset_job(
    "crawl_partition_job", selection=[raw_crawl, *curation_assets],
    description="Ingest one crawl file (partition) and curate it: dedup, tag, filter.")
tokens_job = dg.define_asset_job("tokens_job", selection=["tokenizer", "mixture", "tokenized_shards"],
                                 description="Retrain the tokenizer, replan the mixture and rewrite the token shards.")
sources_ingest_job = dg.define_asset_job("sources_ingest_job", selection=source_assets,
                                         description="Re-ingest the non-web source corpora.")
