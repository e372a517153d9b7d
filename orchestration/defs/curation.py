"""Curation assets: dedup, one asset per registered tagger, and the filter that writes the rejection
ledger; each with its checks. Built from the library's stage contract, so a newly registered tagger
appears here (asset, checks, curated_web input) with no edit."""

import dagster as dg

from orchestration.automation import CURATION
from orchestration.factory import stage_assets
from orchestration.metadata import manifest_metadata
from orchestration.partitions import crawl_backfill_policy, crawl_files
from pipelines.curation.stages import DEDUP, curated_stage, tagger_stage
from pipelines.curation.taggers import TAGGERS
from pipelines.lake import LEDGER

COMMON = dict(group="curation", partitions_def=crawl_files, automation_condition=CURATION, backfill_policy=crawl_backfill_policy)


def _curated_metadata(manifest: dict) -> dict:
    return {**manifest_metadata(manifest),
            "ledger": dg.MetadataValue.md("why was a page dropped? `SELECT stage, reason, score FROM "
                                          f"{LEDGER} WHERE url = '...'` (DuckDB over the lake's catalog)")}


def build_curation_defs() -> list:
    """Assets and checks of every curation stage, from the current tagger registry."""
    defs = stage_assets(DEDUP, deps=["raw_crawl"], kinds={"python", "parquet", "duckdb"}, pool="dedup_index",
                        write_catalog=True, **COMMON)
    for tagger in TAGGERS:
        stage = tagger_stage(tagger)
        defs += stage_assets(stage, deps=list(stage.inputs), kinds=set(tagger.kinds), **COMMON)
    curated = curated_stage()
    defs += stage_assets(curated, deps=list(curated.inputs), kinds={"python", "parquet"}, metadata=_curated_metadata,
                         write_catalog=True, **COMMON)
    return defs


curation_assets = build_curation_defs()
