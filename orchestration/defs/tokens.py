"""Tokenizer, mixture and token-shard assets (unpartitioned: they read every curated partition)."""

import dagster as dg

from orchestration.automation import DAILY
from orchestration.factory import stage_assets
from orchestration.partitions import ALL_CRAWL_FILES
from pipelines.tokenize.stages import MIXTURE, SHARDS, TOKENIZER


def _deps(stage) -> list:
    return [dg.AssetDep(name, partition_mapping=ALL_CRAWL_FILES) if name == "curated_web" else name for name in stage.inputs]


COMMON = dict(group="tokens", automation_condition=DAILY)
token_assets = [
    *stage_assets(TOKENIZER, deps=_deps(TOKENIZER), kinds={"python", "huggingface"}, **COMMON),
    *stage_assets(MIXTURE, deps=_deps(MIXTURE), kinds={"python", "parquet"}, write_catalog=True, **COMMON),
    *stage_assets(SHARDS, deps=_deps(SHARDS), kinds={"python", "numpy"}, **COMMON),
]
