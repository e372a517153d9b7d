"""Partitions shared by several definitions: one `crawl_files` partition per crawl file."""

import dagster as dg

crawl_files = dg.DynamicPartitionsDefinition(name="crawl_files")
ALL_CRAWL_FILES = dg.AllPartitionMapping()
