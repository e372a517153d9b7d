"""Curation stages over one crawl partition, lake in, lake out.

    raw_crawl -> deduped -> (one attribute asset per registered tagger) -> curated_web

`deduped` removes duplicates (inherently a decision). Taggers only measure: each writes
an attribute file (id + its columns, same row order as `deduped`). `curated_web` joins
the attributes, asks each tagger in registry order whether to reject a document, lets
each rewrite the kept text (PII redaction, toxic-line removal), and writes the kept
documents plus a rejection-ledger row for every removed one. Re-tuning a threshold
re-runs only `curated_web`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipelines.contract import Check, CheckResult, Stage, StageContext, config_to_dict, param, require
from pipelines.curation.dedup import INDEX_FILE, DedupConfig, DedupIndex, DedupResult, text_hash
from pipelines.curation.dedup_batch import batch_deduplicate
from pipelines.curation.tagger import NoConfig, Rejection, Tagger
from pipelines.curation.taggers import TAGGERS
from pipelines.engine import Engine
from pipelines.lake import LEDGER, Lake
from pipelines.schema import DOCUMENT_SCHEMA

LEDGER_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("partition", pa.string()), ("stage", pa.string()),
    ("reason", pa.string()), ("score", pa.float64()), ("details", pa.string()), ("dup_of", pa.string()),
    ("crawl", pa.string()), ("origin_file", pa.string()), ("origin_offset", pa.int64()),
])
DEDUPED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("dup_cluster", pa.string()))


@dataclass
class StageReport:
    """What a stage did: rows in/out, reasons, timing; becomes the manifest and UI metadata."""

    stage: str
    partition: str
    config: object
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
                "seconds": round(self.seconds, 3), "inputs": inputs, "config": config_to_dict(self.config), **self.extra}


def _read(lake: Lake, asset: str, partition: str, columns: list[str] | None = None) -> pa.Table:
    if not lake.has_data(asset, partition):
        raise FileNotFoundError(f"{asset} has no output for partition {partition!r} at {lake.data_location(asset, partition)}: "
                                f"materialize {asset} first")
    return lake.read_table(asset, partition, columns)


def _write(lake: Lake, table: pa.Table, report: StageReport, inputs: dict) -> dict:
    with lake.writer(report.stage, report.partition, table.schema) as w:
        w.write_table(table)
        report.content_hash = w.commit()
        report.path = str(w.path)
    report.rows_out = table.num_rows
    manifest = report.manifest(inputs)
    lake.write_manifest(report.stage, report.partition, manifest)
    return manifest


def _upstream(lake: Lake, *assets: str, partition: str) -> dict:
    """Content hashes of the inputs: the lineage a manifest records."""
    return {a: lake.read_manifest(a, partition)["content_hash"] for a in assets}


def _write_ledger(lake: Lake, stage: str, partition: str, rows: list[dict]) -> str:
    table = pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
    with lake.writer(LEDGER, lake.ledger_partition(stage, partition), LEDGER_SCHEMA) as w:
        w.write_table(table)
        return w.commit()


def _ledger_row(doc: dict, partition: str, rejection: Rejection, dup_of=None) -> dict:
    return {"id": doc["id"], "url": doc["url"], "partition": partition, "stage": rejection.stage, "reason": rejection.reason,
            "score": None if rejection.score is None else float(rejection.score), "details": rejection.details,
            "dup_of": dup_of, "crawl": doc["crawl"], "origin_file": doc["origin_file"], "origin_offset": doc["origin_offset"]}


# ---- dedup -------------------------------------------------------------------------
def dedup_partition(ctx: StageContext, config: DedupConfig = DedupConfig()) -> dict:
    t0 = time.perf_counter()
    docs = _read(ctx.lake, "raw_crawl", ctx.partition)
    with ctx.lake.synced(ctx.lake.dedup_index_dir(), INDEX_FILE) as root:
        res = DedupIndex(root).deduplicate(ctx.partition, docs.column("id").to_pylist(), docs.column("text").to_pylist(), config)
    return _write_dedup(ctx.lake, ctx.partition, docs, res, config, time.perf_counter() - t0)


def dedup_partitions(ctxs: list[StageContext], config: DedupConfig, engine: Engine) -> list[dict]:
    """Dedup partitions in the given order: batch mode when they start an empty index (a snapshot's
    first backfill), else one incremental partition after another. Both make the same decisions."""
    lake, results = ctxs[0].lake, None
    if len(ctxs) > 1:  # (one partition goes straight to the incremental index: one sync of an object-store index, not two)
        with lake.synced(lake.dedup_index_dir(), INDEX_FILE) as root:
            index = DedupIndex(root)
            if not index.registry():
                t0 = time.perf_counter()
                results = batch_deduplicate(index, [(c.partition, lake.data_location("raw_crawl", c.partition)) for c in ctxs],
                                            config, engine)
    if results is None:
        return [dedup_partition(ctx, config) for ctx in ctxs]
    ctxs[0].log(f"batch dedup of {len(ctxs)} partitions on the {engine.config.kind} engine: {time.perf_counter() - t0:.1f} s")
    seconds = (time.perf_counter() - t0) / len(ctxs)
    return [_write_dedup(lake, c.partition, _read(lake, "raw_crawl", c.partition), results[c.partition], config, seconds,
                         batch=len(ctxs)) for c in ctxs]


def _write_dedup(lake: Lake, partition: str, docs: pa.Table, res: DedupResult, config: DedupConfig, seconds: float,
                 batch: int = 0) -> dict:
    """deduped[partition] and its ledger from the index's decisions."""
    t0 = time.perf_counter()
    report = StageReport("deduped", partition, config, rows_in=docs.num_rows)
    ledger = []
    meta = docs.select(["id", "url", "crawl", "origin_file", "origin_offset"]).to_pylist()
    for i in np.nonzero(~res.keep)[0]:
        report.reasons[res.reason[i]] += 1
        ledger.append(_ledger_row(meta[i], partition, Rejection("dedup", res.reason[i], res.score[i]), dup_of=res.dup_of[i]))
    kept = docs.append_column("dup_cluster", pa.array(res.cluster, pa.string())).filter(pa.array(res.keep))
    hasher = config.hasher()
    report.extra = {"ledger_hash": _write_ledger(lake, "dedup", partition, ledger), "index_seq": res.seq,
                    "repair_partitions": _partitions_pointing_at(lake, res.vanished, partition),
                    "candidate_pairs": res.candidate_pairs, "verified_pairs": res.verified_pairs,
                    "lsh": {"bands": hasher.bands, "rows": hasher.rows, "num_perm": hasher.num_perm, "ngram": hasher.ngram,
                            "threshold": config.threshold}}
    if batch:
        report.extra["batch_partitions"] = batch  # decided by batch mode with this many partitions
    report.seconds = seconds + time.perf_counter() - t0
    return _write(lake, kept.cast(DEDUPED_SCHEMA), report, _upstream(lake, "raw_crawl", partition=partition))


def _partitions_pointing_at(lake: Lake, vanished: list[str], partition: str) -> list[str]:
    """Other partitions whose dedup decisions name one of `vanished` as survivor: they need a re-run
    (this partition's file changed and no longer holds those documents)."""
    if not vanished or LEDGER not in lake.assets():
        return []
    con = lake.connect()
    con.execute("CREATE TEMP TABLE vanished AS SELECT unnest(?::VARCHAR[]) AS id", [vanished])
    rows = con.execute(f"SELECT DISTINCT partition FROM {LEDGER} WHERE stage = 'dedup' AND partition != ? "
                       "AND dup_of IN (SELECT id FROM vanished) ORDER BY 1", [partition]).fetchall()
    return [p for (p,) in rows]


def _no_exact_duplicates(lake: Lake, manifest: dict) -> CheckResult:
    hashes = [text_hash(t) for t in lake.read_table("deduped", manifest["partition"], ["text"]).column("text").to_pylist()]
    dupes = len(hashes) - len(set(hashes))
    return CheckResult(dupes == 0, {"duplicate_texts": dupes})


DEDUP = Stage(
    name="deduped", config=DedupConfig, run=dedup_partition, run_many=dedup_partitions, inputs=("raw_crawl",), partitioned=True,
    description="raw_crawl minus exact and near duplicates, against this file and every file ingested before it.\n\n"
                "Signatures and keys go into `dedup_index/` (sorted run files, a binary search per key); each cluster "
                "keeps its earliest document (file order, then position). Removed documents are in the rejection ledger "
                "with the survivor's id and the estimated Jaccard.",
    checks=(Check("no_exact_duplicates", "No two kept documents share a normalized-text hash.", _no_exact_duplicates),),
)


# ---- taggers -----------------------------------------------------------------------
def _providers(tagger: Tagger) -> dict[str, str]:
    """Column -> the registered tagger that writes it, for each column `tagger` needs."""
    owners = {c: t.name for t in TAGGERS for c in t.attributes.names}
    missing = [c for c in tagger.needs if c not in owners]
    if missing:
        raise ValueError(f"tagger {tagger.name!r} needs {missing}, which no registered tagger writes")
    return {c: owners[c] for c in tagger.needs}


def _tagger_inputs(providers: dict[str, str]) -> tuple[str, ...]:
    return ("deduped", *sorted(set(providers.values())))


def tag_partition(tagger: Tagger, ctx: StageContext, config) -> dict:
    """Run one tagger over `deduped[partition]` (and the columns it needs) and write its attribute file."""
    t0 = time.perf_counter()
    docs = _read(ctx.lake, "deduped", ctx.partition, ["id", "text"])
    providers, needed = _providers(tagger), {}
    for column, owner in providers.items():
        table = _read(ctx.lake, owner, ctx.partition, ["id", column])
        if not table.column("id").equals(docs.column("id")):
            raise ValueError(f"{owner}[{ctx.partition}] is out of date with deduped[{ctx.partition}]: re-materialize {owner}")
        needed[column] = table.column(column).to_pylist()
    columns, extra = tagger.tag(docs.column("text").to_pylist(), config, **needed)
    report = StageReport(tagger.name, ctx.partition, config, rows_in=docs.num_rows, extra=extra)
    report.seconds = time.perf_counter() - t0
    table = pa.table({"id": docs.column("id"), **columns}, schema=pa.schema([("id", pa.string()), *tagger.attributes]))
    return _write(ctx.lake, table, report, _upstream(ctx.lake, *_tagger_inputs(providers), partition=ctx.partition))


def tagger_stage(tagger: Tagger) -> Stage:
    return Stage(name=tagger.name, config=tagger.tag_config, run=functools.partial(tag_partition, tagger),
                 description=tagger.description, inputs=_tagger_inputs(_providers(tagger)),
                 checks=tagger.checks, partitioned=True)


# ---- filter ------------------------------------------------------------------------
def _check_drop_bounds(cfg) -> None:
    require(0 <= cfg.min_drop_rate <= cfg.max_drop_rate <= 1, cfg, "max_drop_rate", "need 0 <= min_drop_rate <= max_drop_rate <= 1")


@functools.cache
def _curate_config_class(filters: tuple[tuple[str, type], ...]) -> type:
    fields = [(name, cls, field(default=cls(), metadata={"doc": f"thresholds applied to `{name}`"})) for name, cls in filters]
    fields += [("max_drop_rate", float, param(0.95, "warning check: most documents the filter is expected to remove (share)")),
               ("min_drop_rate", float, param(0.0, "warning check: fewest documents the filter is expected to remove (share)"))]
    return dataclasses.make_dataclass("CurateConfig", fields, frozen=True,
                                      namespace={"__doc__": "Thresholds of every registered tagger, applied by curated_web.",
                                                 "__post_init__": _check_drop_bounds})


def curate_config_class(taggers: list[Tagger] | None = None) -> type:
    """The curated_web config: one nested section per tagger with thresholds, plus the drop-rate bounds."""
    taggers = TAGGERS if taggers is None else taggers
    return _curate_config_class(tuple((t.name, t.filter_config) for t in taggers if t.filter_config is not NoConfig))


def curated_schema(taggers: list[Tagger] | None = None) -> pa.Schema:
    schema = DEDUPED_SCHEMA
    for t in TAGGERS if taggers is None else taggers:
        for f in t.carry:
            schema = schema.append(f)
    return schema


def _decide(text: str, row: dict, taggers: list[Tagger], filters: dict) -> tuple[str, dict] | Rejection:
    """Every tagger's rejection rule in order, then every rewrite: the kept text and new columns, or why not."""
    for t in taggers:
        rejection = t.reject(row, filters[t.name]) if t.reject else None
        if rejection:
            return rejection
    added: dict = {}
    for t in taggers:
        if t.rewrite:
            out = t.rewrite(text, row, filters[t.name])
            if isinstance(out, Rejection):
                return out
            text, new = out
            added.update(new)
    return text, added


def curate_partition(ctx: StageContext, cfg=None) -> dict:
    t0 = time.perf_counter()
    lake, partition, taggers = ctx.lake, ctx.partition, list(TAGGERS)
    cfg = cfg if cfg is not None else curate_config_class(taggers)()
    docs = _read(lake, "deduped", partition)
    attrs = {t.name: _read(lake, t.name, partition) for t in taggers}
    for name, table in attrs.items():
        if not table.column("id").equals(docs.column("id")):
            raise ValueError(f"{name}[{partition}] is out of date with deduped[{partition}]: re-materialize {name}")
    report = StageReport("curated_web", partition, cfg, rows_in=docs.num_rows)
    schema = curated_schema(taggers)
    carried = [f.name for f in schema][len(DEDUPED_SCHEMA):]
    columns = {name: table.drop_columns(["id"]).to_pydict() for name, table in attrs.items()}
    filters = {t.name: getattr(cfg, t.name, NoConfig()) for t in taggers}
    kept, ledger = [], []
    for i, doc in enumerate(docs.to_pylist()):
        row = dict(doc)
        for cols in columns.values():
            row.update({c: values[i] for c, values in cols.items()})
        decision = _decide(doc["text"], row, taggers, filters)
        if isinstance(decision, Rejection):
            report.reasons[decision.reason] += 1
            ledger.append(_ledger_row(doc, partition, decision))
            continue
        text, added = decision
        row.update(added)
        kept.append({**doc, "text": text, **{c: row[c] for c in carried}})
    table = pa.Table.from_pylist(kept, schema=schema)
    report.extra = {"ledger_hash": _write_ledger(lake, "curation", partition, ledger),
                    "drop_rate": (docs.num_rows - table.num_rows) / max(docs.num_rows, 1)}
    for t in taggers:
        if t.kept_summary:
            report.extra.update(t.kept_summary(kept))
    report.seconds = time.perf_counter() - t0
    return _write(lake, table, report, _upstream(lake, "deduped", *attrs, partition=partition))


def _drop_rate_within_bounds(lake: Lake, manifest: dict) -> CheckResult:
    low, high, rate = manifest["config"]["min_drop_rate"], manifest["config"]["max_drop_rate"], manifest["drop_rate"]
    return CheckResult(low <= rate <= high, {"drop_rate": rate, "bounds": f"[{low}, {high}]"})


def curated_stage(taggers: list[Tagger] | None = None) -> Stage:
    taggers = TAGGERS if taggers is None else taggers
    checks = [Check("drop_rate_within_bounds", "The share of documents removed is within the configured bounds (a warning: "
                    "filtering a whole partition for documented reasons is legitimate).", _drop_rate_within_bounds, blocking=False),
              *(c for t in taggers for c in t.curated_checks)]
    return Stage(
        name="curated_web", config=curate_config_class(taggers), run=curate_partition, partitioned=True,
        inputs=("deduped", *(t.name for t in taggers)), checks=tuple(checks),
        description="Web documents that pass every tagger's thresholds; PII redacted with typed placeholders, toxic "
                    "lines removed. Every removed document has a row in `rejection_ledger` (stage, reason, score) - query "
                    "it with DuckDB.",
    )


def curation_stages() -> list[Stage]:
    """dedup, one stage per registered tagger, the filter: what orchestration turns into assets."""
    return [DEDUP, *(tagger_stage(t) for t in TAGGERS), curated_stage()]
