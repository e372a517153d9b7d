"""Jobs the sensor and schedules launch."""

import dagster as dg

from orchestration.assets.ingest import raw_crawl, source_assets

crawl_ingest_job = dg.define_asset_job("crawl_ingest_job", selection=[raw_crawl],
                                       description="Ingest one crawl file (partition) into the lake.")
sources_ingest_job = dg.define_asset_job("sources_ingest_job", selection=source_assets,
                                         description="Re-ingest the non-web source corpora.")
