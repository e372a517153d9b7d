"""Batch dedup of a whole snapshot: the decisions `DedupIndex.deduplicate` makes over the partitions
in the given order, computed in three parallel steps instead of one partition after another.

1. signatures: the engine's tasks (a process pool, or Ray) hash each partition (MinHash, band keys, text hash) into Parquet
   files in a scratch directory (files, not pickles, carry the arrays between processes);
2. shuffle by key: one engine task per LSH band, and one for text hashes and ids, groups that key
   over the whole snapshot in DuckDB (out of core) and links each node to the earliest node of
   its group. That is the link the incremental index finds: a group's earliest node precedes
   every other member. Bands are independent, so no task holds more than one band's keys;
3. components: the engine's tasks resolve each partition's links with `dedup.resolve`, reading the
   linked earlier documents' ids and signatures from their partitions' files. Partitions are
   independent because a decision follows only the links of the partition's own documents
   (earlier partitions are never changed retroactively).

The index is then written (run and docs files first, index.json last), so incremental runs go on from the snapshot.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.curation.dedup import (
    NODE_BITS,
    DedupConfig,
    DedupIndex,
    DedupResult,
    Link,
    node_of,
    partition_keys,
    resolve,
    seq_range,
    text_hash,
)
from pipelines.engine import Engine, EngineConfig
from pipelines.lake import sql_string

KEY_LINKS_SQL = """
WITH docs AS (SELECT node, min(node) OVER (PARTITION BY text_hash) AS first_hash, min(node) OVER (PARTITION BY id) AS first_id
              FROM read_parquet({docs}))
SELECT node, first_hash AS target, 'exact' AS kind FROM docs WHERE node <> first_hash
UNION ALL SELECT node, first_id, 'same' FROM docs WHERE node <> first_id
ORDER BY node, target, kind
"""
BAND_LINKS_SQL = """
SELECT DISTINCT node, first AS target, 'lsh' AS kind
FROM (SELECT node, min(node) OVER (PARTITION BY key) AS first FROM read_parquet({bands}) WHERE band = {band})
WHERE node <> first ORDER BY node, target
"""
RESOLVE_LINKS_SQL = """
SELECT DISTINCT node, target, kind FROM read_parquet({links}) WHERE node BETWEEN {lo} AND {hi} ORDER BY node, target, kind
"""


def _duckdb(scratch: Path, name: str) -> duckdb.DuckDBPyConnection:
    """One task's DuckDB: a thread (the engine runs tasks side by side), spilling into the scratch directory."""
    return duckdb.connect(config={"threads": 1, "temp_directory": str(scratch / "spill" / name)})


def _hash_partition(job: tuple[int, str, str, DedupConfig, Path]) -> None:
    seq, _, source, config, scratch = job
    table = pq.read_table(source, columns=["id", "text"])  # a path, or a URL pyarrow opens (s3://)
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    hasher = config.hasher()
    sigs = hasher.signatures(texts)
    nodes = np.arange(len(ids), dtype=np.int64) + node_of(seq, 0)
    width = hasher.num_perm * 4
    pq.write_table(pa.table({"node": nodes, "id": pa.array(ids, pa.string()),
                             "text_hash": pa.array([text_hash(t) for t in texts], pa.string()),
                             "signature": pa.array([s.tobytes() for s in sigs], pa.binary(width))}),
                   scratch / "docs" / f"{seq}.parquet")
    keys = hasher.band_keys(sigs).view(np.int64)  # (documents, bands)
    pq.write_table(pa.table({"band": np.repeat(np.arange(hasher.bands, dtype=np.int16), len(ids)), "key": keys.T.reshape(-1),
                             "node": np.tile(nodes, hasher.bands)}),
                   scratch / "bands" / f"{seq}.parquet", row_group_size=max(len(ids), 1))  # a row group per band: band tasks skip the rest


def _link_task(job: tuple[int | None, Path]) -> None:
    """The links of one band (or, for None, of text hashes and ids) over every partition, to links/<name>.parquet."""
    band, scratch = job
    name = "keys" if band is None else f"band-{band}"
    sql = (KEY_LINKS_SQL.format(docs=sql_string(str(scratch / "docs" / "*.parquet"))) if band is None else
           BAND_LINKS_SQL.format(bands=sql_string(str(scratch / "bands" / "*.parquet")), band=int(band)))
    con = _duckdb(scratch, name)
    con.execute(f"COPY ({sql}) TO {sql_string(str(scratch / 'links' / f'{name}.parquet'))} (FORMAT parquet, ROW_GROUP_SIZE 65536)")
    con.close()


def _signatures(docs: pa.Table, num_perm: int) -> np.ndarray:
    return np.frombuffer(b"".join(docs.column("signature").to_pylist()), dtype=np.uint32).reshape(docs.num_rows, num_perm)


def _resolve_partition(job: tuple[int, str, Path, DedupConfig, Path]) -> None:
    seq, _, _, config, scratch = job
    own = pq.read_table(scratch / "docs" / f"{seq}.parquet", columns=["id", "signature"])
    ids = own.column("id").to_pylist()
    sigs = _signatures(own, config.num_perm)
    lo, hi = seq_range(seq)
    con = _duckdb(scratch, f"resolve-{seq}")
    rows = con.execute(RESOLVE_LINKS_SQL.format(links=sql_string(str(scratch / "links" / "*.parquet")), lo=lo, hi=hi)).fetchall()
    links = [Link(node, target, kind) for node, target, kind in rows]
    earlier = sorted({link.target for link in links if link.target < lo})
    targets = {}
    if earlier:  # the linked documents of earlier partitions: their ids and signatures, from their own files
        files = sorted({str(scratch / "docs" / f"{target >> NODE_BITS}.parquet") for target in earlier})
        con.register("wanted", pa.table({"node": pa.array(earlier, pa.int64())}))
        found = con.execute(f"SELECT node, id, signature FROM read_parquet({_sql_list(files)}) WHERE node IN (SELECT node FROM wanted)")
        targets = {node: (doc_id, np.frombuffer(sig, dtype=np.uint32)) for node, doc_id, sig in found.fetchall()}
    con.close()
    res = resolve(seq, ids, sigs, links, targets, config)
    pq.write_table(pa.table({"keep": res.keep, "reason": pa.array(res.reason, pa.string()), "dup_of": pa.array(res.dup_of, pa.string()),
                             "score": pa.array(res.score, pa.float64()), "cluster": pa.array(res.cluster, pa.string())})
                   .replace_schema_metadata({"candidate_pairs": str(res.candidate_pairs), "verified_pairs": str(res.verified_pairs)}),
                   scratch / "decisions" / f"{seq}.parquet")


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(sql_string(p) for p in paths) + "]"


def _read_result(path: Path, seq: int) -> DedupResult:
    table = pq.read_table(path)
    meta = table.schema.metadata
    return DedupResult(keep=np.asarray(table.column("keep").to_pylist(), dtype=bool), reason=table.column("reason").to_pylist(),
                       dup_of=table.column("dup_of").to_pylist(), score=table.column("score").to_pylist(),
                       cluster=table.column("cluster").to_pylist(), seq=seq,
                       candidate_pairs=int(meta[b"candidate_pairs"]), verified_pairs=int(meta[b"verified_pairs"]))


def batch_deduplicate(index: DedupIndex, partitions: Sequence[tuple[str, str | Path]], config: DedupConfig,
                      engine: Engine | None = None) -> dict[str, DedupResult]:
    """Dedup `partitions` (name, Parquet file with `id` and `text`), in this order, into an empty index.

    The scratch files live under the index directory: on a cluster it must be storage every
    worker sees (a shared volume), as the index itself is.
    """
    names = [name for name, _ in partitions]
    if len(set(names)) != len(names):
        raise ValueError("batch dedup got a partition twice; list each crawl file once, in ingest order")
    hasher = config.hasher()
    engine = engine or Engine(EngineConfig())
    with index.locked():
        if index.registry():
            raise ValueError(f"{index.root} already holds partitions: batch mode builds a new index (move it aside), "
                             "and partitions after a snapshot go through the incremental DedupIndex.deduplicate")
        index.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".batch-", dir=index.root) as tmp:
            scratch = Path(tmp)
            for sub in ("docs", "bands", "links", "decisions"):
                (scratch / sub).mkdir()
            jobs = [(seq, name, str(path), config, scratch) for seq, (name, path) in enumerate(partitions)]
            engine.map(_hash_partition, jobs)
            engine.map(_link_task, [(band, scratch) for band in [None, *range(hasher.bands)]])
            engine.map(_resolve_partition, jobs)
            manifest = index.manifest()
            index.check_lsh(manifest, hasher)
            for seq, name, *_ in jobs:
                own = pq.read_table(scratch / "docs" / f"{seq}.parquet")
                ids, hashes, sigs = own.column("id").to_pylist(), own.column("text_hash").to_pylist(), _signatures(own, config.num_perm)
                bands = pq.read_table(scratch / "bands" / f"{seq}.parquet", columns=["key"]).column("key").to_numpy()
                bands = bands.view(np.uint64).reshape(hasher.bands, len(ids)).T  # band-major on disk -> (documents, bands)
                keyed = partition_keys(hasher, seq, ids, hashes, sigs, bands)  # the tasks' band keys, not again
                index.add(manifest, name, seq, ids, hashes, sigs, keyed)
            index.commit(manifest)
            return {name: _read_result(scratch / "decisions" / f"{seq}.parquet", seq) for seq, name, *_ in jobs}
