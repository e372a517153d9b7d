"""The crawl-to-curated path as the byte-identity tests run it: the assets, the files compared, and the
reference lake (the local engine, one run per partition, as the sensor launches them)."""

from pathlib import Path

import dagster as dg

from orchestration.defs.curation import curation_assets
from orchestration.defs.ingest import raw_crawl_defs
from orchestration.partitions import crawl_files

CRAWL_ASSETS = [*raw_crawl_defs, *curation_assets]
COMPARED = ("raw_crawl", "deduped", "language_id", "pii_tags", "quality_tags", "toxicity_tags", "curated_web", "rejection_ledger")


def crawl_keys(sample_dir: Path) -> list[str]:
    """The sample's crawl partitions, WET twins left out."""
    return sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)


def run_each_partition(keys: list[str], resources: dict) -> dict[str, bytes]:
    """Every partition in its own local run into `resources`' lake; the compared Parquet files by lake path."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, keys)
        for key in keys:
            assert dg.materialize(CRAWL_ASSETS, partition_key=key, instance=instance, resources=resources).success
    return lake_files(Path(resources["lake"].root))


def lake_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for asset in COMPARED for p in sorted((root / asset).rglob("*.parquet"))}
