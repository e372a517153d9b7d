"""Curation stages over one crawl partition, lake in, lake out.

    raw_crawl -> deduped -> (language_id, pii_tags, toxicity_tags, quality_tags) -> curated_web

`deduped` removes duplicates (inherently a decision). The four taggers only
measure: they write attribute files (id + scores, same row order as `deduped`).
`curated_web` joins the attributes, applies thresholds, redacts PII, drops toxic
lines, and writes the kept documents plus a rejection-ledger row for every
removed one. Re-tuning a threshold re-runs only `curated_web`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.curation import langid, pii, quality, toxicity
from pipelines.curation.dedup import DedupConfig, DedupIndex
from pipelines.lake import Lake
from pipelines.parallel import map_chunks
from pipelines.schema import DOCUMENT_SCHEMA

LEDGER = "rejection_ledger"
LEDGER_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("partition", pa.string()), ("stage", pa.string()),
    ("reason", pa.string()), ("score", pa.float64()), ("details", pa.string()), ("dup_of", pa.string()),
    ("crawl", pa.string()), ("origin_file", pa.string()), ("origin_offset", pa.int64()),
])
DEDUPED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("dup_cluster", pa.string()))
LANG_SCHEMA = pa.schema([("id", pa.string()), ("lang", pa.string()), ("lang_score", pa.float32())])
PII_COUNTS = pa.struct([(t, pa.int32()) for t in pii.PII_TYPES])
PII_SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("type", pa.string())])
PII_SCHEMA = pa.schema([("id", pa.string()), ("pii_counts", PII_COUNTS), ("pii_spans", pa.list_(PII_SPAN))])
TOX_SCHEMA = pa.schema([("id", pa.string()), ("toxicity", pa.float32()), ("line_toxicity", pa.list_(pa.float32()))])
QUALITY_SCHEMA = pa.schema([("id", pa.string()), ("quality", pa.struct([(m, pa.float64()) for m in quality.METRIC_NAMES]))])
CURATED_SCHEMA = DEDUPED_SCHEMA.append(pa.field("lang", pa.string())).append(pa.field("lang_score", pa.float32())) \
    .append(pa.field("pii_counts", PII_COUNTS)).append(pa.field("toxicity", pa.float32())) \
    .append(pa.field("toxic_lines_removed", pa.int32()))


@dataclass
class StageReport:
    """What a stage did: rows in/out, reasons, timing; becomes the manifest and UI metadata."""

    stage: str
    partition: str
    rows_in: int = 0
    rows_out: int = 0
    reasons: Counter = field(default_factory=Counter)
    extra: dict = field(default_factory=dict)
    content_hash: str = ""
    path: str = ""
    seconds: float = 0.0

    def manifest(self, inputs: dict) -> dict:
        return {"asset": self.stage, "partition": self.partition, "rows_in": self.rows_in, "rows": self.rows_out,
                "reasons": dict(self.reasons), "content_hash": self.content_hash, "path": self.path,
                "seconds": round(self.seconds, 3), "inputs": inputs, **self.extra}


def _read(lake: Lake, asset: str, partition: str, columns: list[str] | None = None) -> pa.Table:
    path = lake.data_path(asset, partition)
    if not path.exists():
        raise FileNotFoundError(f"{asset} has no output for partition {partition!r} at {path}: materialize {asset} first")
    return pq.read_table(path, columns=columns)


def _write(lake: Lake, asset: str, partition: str, table: pa.Table, report: StageReport, inputs: dict) -> dict:
    with lake.writer(asset, partition, table.schema) as w:
        w.write_table(table)
        report.content_hash = w.commit()
        report.path = str(w.path)
    report.rows_out = table.num_rows
    manifest = report.manifest(inputs)
    lake.write_manifest(asset, partition, manifest)
    return manifest


def _upstream(lake: Lake, *assets: str, partition: str) -> dict:
    """Content hashes of the inputs: the lineage a manifest records."""
    return {a: lake.read_manifest(a, partition)["content_hash"] for a in assets}


def _write_ledger(lake: Lake, stage: str, partition: str, rows: list[dict]) -> str:
    table = pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
    with lake.writer(LEDGER, f"{stage}/{partition}", LEDGER_SCHEMA) as w:
        w.write_table(table)
        return w.commit()


def _ledger_row(doc: dict, partition: str, stage: str, reason: str, score=None, details: str = "", dup_of=None) -> dict:
    return {"id": doc["id"], "url": doc["url"], "partition": partition, "stage": stage, "reason": reason,
            "score": None if score is None else float(score), "details": details, "dup_of": dup_of,
            "crawl": doc["crawl"], "origin_file": doc["origin_file"], "origin_offset": doc["origin_offset"]}


# ---- dedup -------------------------------------------------------------------------
def dedup_partition(lake: Lake, partition: str, config: DedupConfig = DedupConfig()) -> dict:
    t0 = time.perf_counter()
    docs = _read(lake, "raw_crawl", partition)
    index = DedupIndex(lake.root / "dedup_index")
    res = index.deduplicate(partition, docs.column("id").to_pylist(), docs.column("text").to_pylist(), config)
    report = StageReport("deduped", partition, rows_in=docs.num_rows)
    ledger = []
    meta = docs.select(["id", "url", "crawl", "origin_file", "origin_offset"]).to_pylist()
    for i in np.nonzero(~res.keep)[0]:
        report.reasons[res.reason[i]] += 1
        ledger.append(_ledger_row(meta[i], partition, "dedup", res.reason[i], res.score[i], dup_of=res.dup_of[i]))
    kept = docs.append_column("dup_cluster", pa.array(res.cluster, pa.string())).filter(pa.array(res.keep))
    hasher = config.hasher()
    report.extra = {"ledger_hash": _write_ledger(lake, "dedup", partition, ledger), "index_seq": res.seq,
                    "candidate_pairs": res.candidate_pairs, "verified_pairs": res.verified_pairs,
                    "lsh": {"bands": hasher.bands, "rows": hasher.rows, "num_perm": hasher.num_perm, "ngram": hasher.ngram,
                            "threshold": config.threshold}}
    report.seconds = time.perf_counter() - t0
    return _write(lake, "deduped", partition, kept.cast(DEDUPED_SCHEMA), report, _upstream(lake, "raw_crawl", partition=partition))


# ---- taggers -----------------------------------------------------------------------
def langid_partition(lake: Lake, partition: str, model_path: str | None = None) -> dict:
    t0 = time.perf_counter()
    docs = _read(lake, "deduped", partition, ["id", "text"])
    labels, scores = langid.identify(docs.column("text").to_pylist(), model_path)
    report = StageReport("language_id", partition, rows_in=docs.num_rows)
    report.extra = {"languages": dict(Counter(labels).most_common()), "model": str(langid.resolve_model_path(model_path))}
    report.seconds = time.perf_counter() - t0
    table = pa.table({"id": docs.column("id"), "lang": pa.array(labels, pa.string()), "lang_score": pa.array(scores, pa.float32())})
    return _write(lake, "language_id", partition, table, report, _upstream(lake, "deduped", partition=partition))


def _pii_chunk(texts):
    out = []
    for t in texts:
        spans = pii.find_pii(t)
        out.append((pii.count_by_type(spans), [{"start": s.start, "end": s.end, "type": s.type} for s in spans]))
    return out


def pii_partition(lake: Lake, partition: str, workers: int = 1) -> dict:
    t0 = time.perf_counter()
    docs = _read(lake, "deduped", partition, ["id", "text"])
    found = map_chunks(_pii_chunk, docs.column("text").to_pylist(), workers)
    report = StageReport("pii_tags", partition, rows_in=docs.num_rows)
    totals = Counter()
    for counts, _ in found:
        totals.update(counts)
    report.extra = {"pii_found": {k: totals[k] for k in pii.PII_TYPES}, "docs_with_pii": sum(bool(s) for _, s in found)}
    report.seconds = time.perf_counter() - t0
    table = pa.table({"id": docs.column("id"), "pii_counts": pa.array([c for c, _ in found], PII_COUNTS),
                      "pii_spans": pa.array([s for _, s in found], pa.list_(PII_SPAN))})
    return _write(lake, "pii_tags", partition, table, report, _upstream(lake, "deduped", partition=partition))


def toxicity_partition(lake: Lake, partition: str, model_path: str | None = None, label: str = "__label__toxic") -> dict:
    t0 = time.perf_counter()
    docs = _read(lake, "deduped", partition, ["id", "text"])
    scorer = toxicity.make_scorer(model_path, label)
    line_scores = toxicity.score_documents(docs.column("text").to_pylist(), scorer)
    doc_scores = [float(s.max()) if len(s) else 0.0 for s in line_scores]
    report = StageReport("toxicity_tags", partition, rows_in=docs.num_rows)
    report.extra = {"scorer": scorer.name, "score_histogram": np.histogram(doc_scores, bins=10, range=(0, 1))[0].tolist()}
    report.seconds = time.perf_counter() - t0
    table = pa.table({"id": docs.column("id"), "toxicity": pa.array(doc_scores, pa.float32()),
                      "line_toxicity": pa.array([s.tolist() for s in line_scores], pa.list_(pa.float32()))})
    return _write(lake, "toxicity_tags", partition, table, report, _upstream(lake, "deduped", partition=partition))


def _quality_chunk(texts):
    return [quality.quality_metrics(t) for t in texts]


def quality_partition(lake: Lake, partition: str, workers: int = 1) -> dict:
    t0 = time.perf_counter()
    docs = _read(lake, "deduped", partition, ["id", "text"])
    metrics = map_chunks(_quality_chunk, docs.column("text").to_pylist(), workers)
    report = StageReport("quality_tags", partition, rows_in=docs.num_rows)
    fails = Counter(r for m in metrics for r in quality.quality_failures(m))
    report.extra = {"rule_failures_at_default_thresholds": dict(fails.most_common())}
    report.seconds = time.perf_counter() - t0
    table = pa.table({"id": docs.column("id"), "quality": pa.array(metrics, QUALITY_SCHEMA.field("quality").type)})
    return _write(lake, "quality_tags", partition, table, report, _upstream(lake, "deduped", partition=partition))


# ---- filter ------------------------------------------------------------------------
@dataclass(frozen=True)
class FilterConfig:
    keep_languages: tuple[str, ...] = ("en", "de", "fr", "es")  # empty: keep every language
    min_lang_score: float = 0.65
    toxicity_threshold: float = 0.5
    toxicity_mode: str = "lines"  # "lines": drop offending lines; "document": drop the whole document
    max_toxic_fraction: float = 0.5  # lines mode: drop the document when more of its characters are toxic
    # Languages the toxicity scorer was trained on; the shipped classifier is English-only and
    # flags ordinary German/French text, so its scores are ignored elsewhere. Empty: all.
    toxicity_languages: tuple[str, ...] = ("en",)
    max_pii_spans: int = 20  # more PII than this and the page is a data dump: drop it
    quality: quality.QualityThresholds = quality.QualityThresholds()


def _apply_filters(doc: dict, lang: dict, tags_pii: dict, tox: dict, qual: dict, cfg: FilterConfig):
    """(kept text, toxic lines removed) or (None, (stage, reason, score, details))."""
    if cfg.keep_languages and lang["lang"] not in cfg.keep_languages:
        return None, ("language", "language:not_kept", lang["lang_score"], lang["lang"])
    if lang["lang_score"] < cfg.min_lang_score:
        return None, ("language", "language:low_confidence", lang["lang_score"], lang["lang"])
    toxicity_applies = not cfg.toxicity_languages or lang["lang"] in cfg.toxicity_languages
    line_scores = (tox["line_toxicity"] or []) if toxicity_applies else []
    if cfg.toxicity_mode == "document" and toxicity_applies and tox["toxicity"] >= cfg.toxicity_threshold:
        return None, ("toxicity", "toxicity:document", tox["toxicity"], "")
    spans = tags_pii["pii_spans"] or []
    if len(spans) > cfg.max_pii_spans:
        return None, ("pii", "pii:too_many_spans", float(len(spans)), str(tags_pii["pii_counts"]))
    failures = quality.failed_rules(qual["quality"], cfg.quality)
    if failures:
        (reason, metric), reasons = failures[0], ",".join(r for r, _ in failures)
        return None, ("quality", reason, qual["quality"][metric], reasons)
    text = pii.redact(doc["text"], [pii.Span(s["start"], s["end"], s["type"]) for s in spans])
    lines = text.split("\n")
    bad = [i for i, s in enumerate(line_scores) if s >= cfg.toxicity_threshold] if cfg.toxicity_mode == "lines" else []
    if bad:
        bad_chars = sum(len(lines[i]) for i in bad)
        if bad_chars > cfg.max_toxic_fraction * max(len(text), 1):
            return None, ("toxicity", "toxicity:mostly_toxic", tox["toxicity"], f"{len(bad)}/{len(lines)} lines")
        drop = set(bad)
        lines = [x for i, x in enumerate(lines) if i not in drop]
    return "\n".join(lines), len(bad)


def curate_partition(lake: Lake, partition: str, cfg: FilterConfig = FilterConfig()) -> dict:
    t0 = time.perf_counter()
    docs = _read(lake, "deduped", partition)
    attrs = {name: _read(lake, name, partition) for name in ("language_id", "pii_tags", "toxicity_tags", "quality_tags")}
    for name, table in attrs.items():
        if not table.column("id").equals(docs.column("id")):
            raise ValueError(f"{name}[{partition}] is out of date with deduped[{partition}]: re-materialize {name}")
    report = StageReport("curated_web", partition, rows_in=docs.num_rows)
    doc_rows = docs.to_pylist()
    lang_rows, pii_rows, tox_rows, q_rows = (attrs[n].to_pylist() for n in ("language_id", "pii_tags", "toxicity_tags", "quality_tags"))
    kept, ledger, kept_lang = [], [], Counter()
    redacted = Counter()
    for doc, lang, tp, tox, q in zip(doc_rows, lang_rows, pii_rows, tox_rows, q_rows):
        text, info = _apply_filters(doc, lang, tp, tox, q, cfg)
        if text is None:
            stage, reason, score, details = info
            report.reasons[reason] += 1
            ledger.append(_ledger_row(doc, partition, stage, reason, score, details))
            continue
        redacted.update({k: v for k, v in tp["pii_counts"].items() if v})
        kept_lang[lang["lang"]] += 1
        kept.append({**doc, "text": text, "lang": lang["lang"], "lang_score": lang["lang_score"], "pii_counts": tp["pii_counts"],
                     "toxicity": tox["toxicity"], "toxic_lines_removed": info})
    table = pa.Table.from_pylist(kept, schema=CURATED_SCHEMA)
    report.extra = {"ledger_hash": _write_ledger(lake, "curation", partition, ledger), "languages_kept": dict(kept_lang.most_common()),
                    "pii_redacted": dict(redacted), "toxic_lines_removed": int(pc.sum(table.column("toxic_lines_removed")).as_py() or 0),
                    "drop_rate": (docs.num_rows - table.num_rows) / max(docs.num_rows, 1),
                    "config": {"keep_languages": list(cfg.keep_languages), "min_lang_score": cfg.min_lang_score,
                               "toxicity_threshold": cfg.toxicity_threshold, "toxicity_mode": cfg.toxicity_mode,
                               "toxicity_languages": list(cfg.toxicity_languages),
                               "max_pii_spans": cfg.max_pii_spans}}
    report.seconds = time.perf_counter() - t0
    inputs = _upstream(lake, "deduped", "language_id", "pii_tags", "toxicity_tags", "quality_tags", partition=partition)
    return _write(lake, "curated_web", partition, table, report, inputs)
