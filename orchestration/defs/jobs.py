"""Jobs the sensor and schedules launch (selections by group and name, checks included)."""

import dagster as dg

from pipelines.ingest import SOURCE_STAGES

crawl_partition_job = dg.define_asset_job(
    "crawl_partition_job", selection=dg.AssetSelection.assets("raw_crawl") | dg.AssetSelection.groups("curation"),
    description="Ingest one crawl file (partition) and curate it: dedup, tag, filter.")
tokens_job = dg.define_asset_job("tokens_job", selection=dg.AssetSelection.groups("tokens"),
                                 description="Retrain the tokenizer, replan the mixture and rewrite the token shards.")
sources_ingest_job = dg.define_asset_job("sources_ingest_job", selection=[s.name for s in SOURCE_STAGES],
                                         description="Re-ingest the non-web source corpora.")
