"""Exact + MinHash near-duplicate removal, incremental across crawl partitions.

The index lives in the lake as Parquet, one directory per partition:

    dedup_index/<partition>/docs.parquet    seq, partition, id, rank, text_hash, signature
    dedup_index/<partition>/bands.parquet   seq, id, rank, band, key
    dedup_index/registry.json               partition -> seq (the order partitions arrived)

A new partition is matched against every partition with a smaller seq by DuckDB
joins over those files (out of core: the index is never loaded into RAM), and
against itself. Candidate pairs are verified by the Jaccard estimate of their
signatures, linked with union-find, and each cluster keeps exactly one document:

    survivor rule: the earliest document, ordered by (seq, position in its file).

A page seen twice (a WARC response and the WET conversion made from it share one id) is one
document: the copy ingested first is kept, the later one is dropped as `same_document`.

Documents of earlier partitions are never removed retroactively (they may already
be in a trained model): a new document joining their cluster is the one dropped.
Re-running a partition replaces its own index entries and matches only against
partitions that arrived before it, so the result does not depend on re-runs.
An flock on the index serializes partitions, so concurrent runs cannot race.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from pipelines.contract import param, require
from pipelines.curation.minhash import MinHasher, normalize
from pipelines.lake import atomic_directory, atomic_write_bytes, partition_dirname, recover_swaps, sql_string


@dataclass(frozen=True)
class DedupConfig:
    threshold: float = param(0.8, "Jaccard similarity at which two documents count as near-duplicates")
    num_perm: int = param(112, "MinHash permutations per signature")
    ngram: int = param(5, "word n-gram (shingle) size")
    bands: int | None = param(None, "LSH bands; None = derived from the threshold (with rows)")
    rows: int | None = param(None, "LSH rows per band; None = derived from the threshold")
    seed: int = param(1, "seed of the MinHash permutations")
    verify: bool = param(True, "drop LSH candidates whose estimated Jaccard is below threshold - verify_slack")
    verify_slack: float = param(0.05, "tolerance of the signature check on candidates")

    def __post_init__(self):
        require(0 < self.threshold <= 1, self, "threshold", "must be in (0, 1]")
        require(self.num_perm > 0 and self.ngram > 0, self, "num_perm", "num_perm and ngram must be > 0")
        require((self.bands is None) == (self.rows is None), self, "bands", "give both bands and rows, or neither")
        require(self.bands is None or self.bands * self.rows <= self.num_perm, self, "bands", "bands x rows must be <= num_perm")

    def hasher(self) -> MinHasher:
        if self.bands and self.rows:
            return MinHasher(num_perm=self.num_perm, ngram=self.ngram, bands=self.bands, rows=self.rows, seed=self.seed)
        return MinHasher.for_threshold(self.threshold, num_perm=self.num_perm, ngram=self.ngram, seed=self.seed)


@dataclass
class DedupResult:
    keep: np.ndarray  # bool per input document
    reason: list[str | None]  # exact_duplicate | near_duplicate | None
    dup_of: list[str | None]  # survivor id for removed docs
    score: list[float | None]  # estimated Jaccard with the survivor (1.0 for exact)
    cluster: list[str]  # cluster id (the survivor's id) for every doc
    seq: int
    candidate_pairs: int
    verified_pairs: int
    vanished: list[str] = field(default_factory=list)  # ids this partition's previous index had and the new one lacks


def text_hash(text: str) -> str:
    return xxhash.xxh3_128_hexdigest(normalize(text).encode("utf-8"))


def seq_rank(seq: int, rank: int) -> tuple[int, int]:
    return (int(seq), int(rank))


class _UnionFind:
    """Union-find over (seq, rank) nodes; a root is always its cluster's earliest node."""

    def __init__(self):
        self.parent: dict[tuple, tuple] = {}

    def find(self, x: tuple) -> tuple:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: tuple, b: tuple) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo


BANDS_SCHEMA = pa.schema([("seq", pa.int64()), ("id", pa.string()), ("rank", pa.int64()), ("band", pa.int16()),
                          ("key", pa.uint64())])


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(sql_string(p) for p in paths) + "]"


class DedupIndex:
    def __init__(self, root: Path):
        self.root = Path(root)

    @contextlib.contextmanager
    def locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def registry(self) -> dict[str, int]:
        path = self.root / "registry.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _files(self, name: str, before_seq: int) -> list[str]:
        reg = self.registry()
        return [str(self.root / partition_dirname(p) / name) for p, s in sorted(reg.items(), key=lambda kv: kv[1])
                if s < before_seq and (self.root / partition_dirname(p) / name).exists()]

    def deduplicate(self, partition: str, ids: list[str], texts: list[str], config: DedupConfig) -> DedupResult:
        """Decide keep/drop for one partition's documents (in file order) and record them in the index."""
        hasher = config.hasher()
        with self.locked():
            recover_swaps(self.root)  # a partition's index directory left half-swapped by a killed run
            reg = self.registry()
            seq = reg.get(partition, max(reg.values(), default=-1) + 1)
            sigs = hasher.signatures(texts)
            keys = hasher.band_keys(sigs)
            hashes = [text_hash(t) for t in texts]
            n = len(ids)
            docs = pa.table({"seq": pa.array([seq] * n, pa.int64()), "partition": pa.array([partition] * n),
                             "id": pa.array(ids, pa.string()), "rank": pa.array(np.arange(n), pa.int64()),
                             "text_hash": pa.array(hashes, pa.string()),
                             "signature": pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1), pa.uint32()), hasher.num_perm)})
            bands = pa.table({"seq": np.full(n * hasher.bands, seq, dtype=np.int64),
                              "id": np.repeat(np.array(ids, dtype=object), hasher.bands),
                              "rank": np.repeat(np.arange(n, dtype=np.int64), hasher.bands),
                              "band": np.tile(np.arange(hasher.bands, dtype=np.int16), n), "key": keys.reshape(-1)},
                             schema=BANDS_SCHEMA)  # typed even when the partition has no documents
            result = self._match(docs, bands, seq, sigs, config)
            previous = self.root / partition_dirname(partition) / "docs.parquet"
            before = set(pq.read_table(previous, columns=["id"]).column("id").to_pylist()) if previous.exists() else set()
            self._commit(partition, seq, docs, bands)
            result.vanished = sorted(before - set(ids))
        return result

    def _match(self, docs: pa.Table, bands: pa.Table, seq: int, sigs: np.ndarray, config: DedupConfig) -> DedupResult:
        con = duckdb.connect()
        con.register("new_docs", docs)
        con.register("new_bands", bands)
        old_docs, old_bands = self._files("docs.parquet", seq), self._files("bands.parquet", seq)
        empty_docs = "SELECT * FROM new_docs WHERE false"
        con.execute(f"CREATE VIEW old_docs AS {f'SELECT * FROM read_parquet({_sql_list(old_docs)})' if old_docs else empty_docs}")
        old_bands_sql = f"SELECT * FROM read_parquet({_sql_list(old_bands)})" if old_bands else "SELECT * FROM new_bands WHERE false"
        con.execute(f"CREATE VIEW old_bands AS {old_bands_sql}")
        # Every document links to the earliest document sharing its exact hash or an LSH bucket,
        # among older partitions and earlier positions of its own partition (a star per bucket).
        pairs = con.execute("""
            WITH all_docs AS (SELECT seq, rank, id, text_hash FROM old_docs UNION ALL SELECT seq, rank, id, text_hash FROM new_docs),
                 exact AS (SELECT n.rank AS a, arg_min((o.seq, o.rank, o.id), (o.seq, o.rank)) AS b, 'exact' AS kind
                           FROM new_docs n JOIN all_docs o ON n.text_hash = o.text_hash AND (o.seq, o.rank) < (n.seq, n.rank)
                           GROUP BY n.rank),
                 all_bands AS (SELECT seq, rank, id, band, key FROM old_bands UNION ALL SELECT seq, rank, id, band, key FROM new_bands),
                 same AS (SELECT n.rank AS a, arg_min((o.seq, o.rank, o.id), (o.seq, o.rank)) AS b, 'same' AS kind
                          FROM new_docs n JOIN all_docs o ON n.id = o.id AND (o.seq, o.rank) < (n.seq, n.rank)
                          GROUP BY n.rank),
                 lsh AS (SELECT n.rank AS a, arg_min((o.seq, o.rank, o.id), (o.seq, o.rank)) AS b, 'lsh' AS kind
                         FROM new_bands n JOIN all_bands o ON n.band = o.band AND n.key = o.key AND (o.seq, o.rank) < (n.seq, n.rank)
                         GROUP BY n.rank, n.band)
            SELECT a, b, kind FROM exact UNION ALL SELECT a, b, kind FROM same UNION ALL SELECT DISTINCT a, b, kind FROM lsh
        """).fetchall()
        # Nodes are (seq, rank): the same id may legitimately appear twice (a page in a WARC and its WET).
        pairs = [(seq_rank(seq, a), seq_rank(b[0], b[1]), b[2], kind) for a, b, kind in pairs]
        old_nodes = sorted({b for _, b, _, kind in pairs if kind == "lsh" and b[0] != seq})
        old_sigs: dict[tuple, np.ndarray] = {}
        if old_nodes:
            con.register("targets", pa.table({"seq": [s for s, _ in old_nodes], "rank": [r for _, r in old_nodes]}))
            for s_, r_, sig in con.execute("SELECT o.seq, o.rank, o.signature FROM old_docs o JOIN targets USING (seq, rank)").fetchall():
                old_sigs[(s_, r_)] = np.asarray(sig, dtype=np.uint32)
        con.close()

        ids = docs.column("id").to_pylist()
        node_id = {seq_rank(seq, i): d for i, d in enumerate(ids)}
        node_id.update((b, bid) for _, b, bid, _ in pairs)

        def signature(node):
            return sigs[node[1]] if node[0] == seq else old_sigs.get(node)

        uf = _UnionFind()
        exact_nodes: set[tuple] = set()
        same_nodes: set[tuple] = set()  # the same page seen before (its WARC and its WET copy share an id)
        verified = 0
        for a, b, _, kind in pairs:
            if kind in ("exact", "same"):
                (exact_nodes if kind == "exact" else same_nodes).add(a)
                uf.union(a, b)
                continue
            sb = signature(b)
            close_enough = sb is not None and MinHasher.estimate_jaccard(sigs[a[1]], sb) >= config.threshold - config.verify_slack
            if not config.verify or close_enough:
                verified += 1
                uf.union(a, b)
        keep = np.ones(len(ids), dtype=bool)
        reason: list[str | None] = [None] * len(ids)
        dup_of: list[str | None] = [None] * len(ids)
        score: list[float | None] = [None] * len(ids)
        cluster = []
        for i in range(len(ids)):
            node = seq_rank(seq, i)
            root = uf.find(node)
            cluster.append(node_id[root])
            if root != node:
                keep[i] = False
                dup_of[i] = node_id[root]
                if node in same_nodes:
                    reason[i], score[i] = "same_document", 1.0
                elif node in exact_nodes:
                    reason[i], score[i] = "exact_duplicate", 1.0
                else:
                    rs = signature(root)
                    reason[i] = "near_duplicate"
                    score[i] = MinHasher.estimate_jaccard(sigs[i], rs) if rs is not None else None
        return DedupResult(keep, reason, dup_of, score, cluster, seq, len(pairs), verified)

    def _commit(self, partition: str, seq: int, docs: pa.Table, bands: pa.Table) -> None:
        """Replace this partition's index files atomically, then record its seq."""
        with atomic_directory(self.root / partition_dirname(partition)) as tmp:
            pq.write_table(docs, tmp / "docs.parquet", compression="zstd")
            pq.write_table(bands, tmp / "bands.parquet", compression="zstd")
        reg = self.registry()
        reg[partition] = seq
        atomic_write_bytes(self.root / "registry.json", json.dumps(reg, indent=1, sort_keys=True).encode())
