"""Ingest assets: one `raw_crawl` partition per crawl file, one asset per other source."""


from typing import Literal

import dagster as dg

from orchestration.metadata import ingest_metadata
from orchestration.resources import InputsResource, LakeResource
from pipelines.ingest import ingest_crawl_file, ingest_source_dir

crawl_files = dg.DynamicPartitionsDefinition(name="crawl_files")
SOURCE_KINDS = ("books", "code", "wiki", "arxiv", "qa")
OWNERS = ["team:data-platform"]


class CrawlIngestConfig(dg.Config):
    """Knobs of WARC/WET ingest (defaults suit Common Crawl)."""

    extractor: Literal["resiliparse", "trafilatura"] = "resiliparse"
    min_text_chars: int = 1
    max_record_mb: float = 20.0


@dg.asset(
    partitions_def=crawl_files,
    group_name="ingest",
    kinds={"python", "parquet"},
    owners=OWNERS,
    code_version="1",
    tags={"stage": "ingest"},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL),
)
def raw_crawl(context: dg.AssetExecutionContext, config: CrawlIngestConfig, lake: LakeResource,
              inputs: InputsResource) -> dg.MaterializeResult:
    """Documents extracted from one crawl file (WARC or WET, gzip or plain).

    HTML responses are decoded (HTTP/meta charset, then detection) and reduced to
    their main text; every other record ends in a counted outcome (non-HTML, HTTP
    error, corrupt, undecodable ...). Output: `raw_crawl/<file>/part-00000.parquet`.
    """
    key = context.partition_key
    manifest = ingest_crawl_file(lake.lake, inputs.crawl_path, key, progress=context.log.info, extractor=config.extractor,
                                 min_text_chars=config.min_text_chars,
                                 max_record_bytes=int(config.max_record_mb * (1 << 20)))
    lake.lake.write_catalog()
    bad = {k: v for k, v in manifest["outcomes"].items() if k != "kept"}
    context.log.info(f"{key}: kept {manifest['rows']} documents; skipped {bad}")
    for err in manifest["errors"][:5]:
        context.log.warning(err)
    return dg.MaterializeResult(metadata=ingest_metadata(manifest), data_version=dg.DataVersion(manifest["content_hash"]))


def _source_asset(kind: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"source_{kind}",
        group_name="ingest",
        kinds={"python", "parquet"},
        owners=OWNERS,
        code_version="1",
        tags={"stage": "ingest"},
        description=f"The `{kind}` corpus: every JSONL / JSONL.gz / Parquet file under SOURCES_DIR/{kind}, "
                    "as documents in the lake's schema. Malformed lines are counted and skipped.",
    )
    def source(context: dg.AssetExecutionContext, lake: LakeResource, inputs: InputsResource) -> dg.MaterializeResult:
        manifest = ingest_source_dir(lake.lake, inputs.sources_path, kind)
        lake.lake.write_catalog()
        if not manifest["rows"]:
            context.log.warning(f"no {kind} documents under {inputs.sources_path / kind}")
        return dg.MaterializeResult(metadata=ingest_metadata(manifest), data_version=dg.DataVersion(manifest["content_hash"]))

    return source


source_assets = [_source_asset(kind) for kind in SOURCE_KINDS]
