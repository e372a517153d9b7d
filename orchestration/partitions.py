"""Partitions shared by several definitions: one `crawl_files` partition per crawl file."""

import os

import dagster as dg

crawl_files = dg.DynamicPartitionsDefinition(name="crawl_files")

# A backfill of crawl partitions runs up to this many partitions per run (CRAWL_PARTITIONS_PER_RUN): each
# stage of the run spreads them over the engine (process pool or Ray), and dedup of the first run into an
# empty index goes through batch mode. Sensors and the UI's single-partition launches stay one run each.
crawl_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=int(os.environ.get("CRAWL_PARTITIONS_PER_RUN", "64")))
ALL_CRAWL_FILES = dg.AllPartitionMapping()
