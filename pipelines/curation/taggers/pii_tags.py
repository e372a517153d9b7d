"""PII tagger: typed spans per document; curated_web redacts them with placeholders."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from pipelines.contract import Check, CheckResult, param
from pipelines.curation import pii
from pipelines.curation.tagger import Rejection, Tagger
from pipelines.parallel import default_workers, map_chunks

PII_COUNTS = pa.struct([(t, pa.int32()) for t in pii.PII_TYPES])
PII_SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("type", pa.string())])
MUST_NOT_REMAIN = ("email", "credit_card")


@dataclass(frozen=True)
class PiiTagConfig:
    workers: int = param(0, "processes inside this partition; 0 = CURATION_WORKERS or the available cores (max 8)")


@dataclass(frozen=True)
class PiiFilterConfig:
    max_pii_spans: int = param(20, "a document with more PII spans than this is a data dump and is dropped")


def _chunk(texts):
    out = []
    for t in texts:
        spans = pii.find_pii(t)
        out.append((pii.count_by_type(spans), [{"start": s.start, "end": s.end, "type": s.type} for s in spans]))
    return out


def _tag(texts: list[str], cfg: PiiTagConfig):
    found = map_chunks(_chunk, texts, cfg.workers or default_workers())
    totals = Counter()
    for counts, _ in found:
        totals.update(counts)
    columns = {"pii_counts": pa.array([c for c, _ in found], PII_COUNTS),
               "pii_spans": pa.array([s for _, s in found], pa.list_(PII_SPAN))}
    return columns, {"pii_found": {k: totals[k] for k in pii.PII_TYPES}, "docs_with_pii": sum(bool(s) for _, s in found)}


def _reject(row: dict, cfg: PiiFilterConfig) -> Rejection | None:
    spans = row["pii_spans"] or []
    if len(spans) > cfg.max_pii_spans:
        return Rejection("pii", "pii:too_many_spans", float(len(spans)), str(row["pii_counts"]))
    return None


def _redact(text: str, row: dict, cfg: PiiFilterConfig):
    return pii.redact(text, [pii.Span(s["start"], s["end"], s["type"]) for s in row["pii_spans"] or []]), {}


def _redacted(rows: list[dict]) -> dict:
    totals = Counter()
    for r in rows:
        totals.update({k: v for k, v in r["pii_counts"].items() if v})
    return {"pii_redacted": dict(totals)}


def _no_pii_left(lake, manifest: dict) -> CheckResult:
    texts = lake.read_table(manifest["asset"], manifest["partition"], ["text"]).column("text").to_pylist()
    leaks = sum(1 for t in texts for s in pii.find_pii(t) if s.type in MUST_NOT_REMAIN)
    return CheckResult(leaks == 0, {"leaked_spans": leaks})


TAGGER = Tagger(
    name="pii_tags",
    description="PII spans and counts per document: emails, phones, public IPs, Luhn-valid cards, SSNs, IBANs.",
    attributes=pa.schema([("pii_counts", PII_COUNTS), ("pii_spans", pa.list_(PII_SPAN))]),
    tag=_tag, tag_config=PiiTagConfig, filter_config=PiiFilterConfig, reject=_reject, rewrite=_redact,
    carry=(pa.field("pii_counts", PII_COUNTS),),
    kept_summary=_redacted,
    curated_checks=(Check("no_pii_left", "No email address or Luhn-valid card number remains in kept text.", _no_pii_left),),
)
