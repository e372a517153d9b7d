"""Exact + MinHash near-duplicate removal across crawl partitions, one partition at a time.

The index is a directory in the lake, a small log-structured merge tree of immutable files:

    dedup_index/index.json              partitions (name -> seq), the live runs and docs files, the LSH parameters
    dedup_index/runs/<id>/<kind>.{keys,nodes}.npy   sorted (key, node) arrays; kinds: band (LSH bucket
                                        keys), hash (exact text hash), id (document id)
    dedup_index/docs/<id>.arrow         one partition's ids, text hashes and signatures (uncompressed Arrow)

A node is `seq << 32 | position in the partition's file`. Each document of a new partition links to
the earliest earlier node sharing its text hash, its id, or one of its LSH band keys: a binary search
per key in each memory-mapped run (only the pages holding the matching entries are read) plus a sort
of the partition's own keys. Its keys then become a new run, and size-tiered merging keeps the number
of runs logarithmic (MERGE_FANOUT runs of one level become one of the next). So a partition costs
O(keys x runs x log(index)) reads and amortized O(keys x log(partitions)) sequential writes, never a
scan of the index. (The first design joined per-partition Parquet files in DuckDB, reading every
earlier partition; a B-tree (SQLite) avoids the scan but rewrites a page per inserted key, which
grows with the index until the tree has more pages than a partition has keys.)
`pipelines.curation.dedup_batch` builds the same index for a whole snapshot with the same decisions.

Candidate links are verified by the Jaccard estimate of the signatures and joined with union-find;
each cluster keeps exactly one document:

    survivor rule: the earliest document, ordered by (seq, position in its file).

A page seen twice (a WARC response and the WET conversion made from it share one id) is one
document: the copy ingested first is kept, the later one is dropped as `same_document`.

Documents of earlier partitions are never removed retroactively (they may already be in a trained
model): a new document joining their cluster is the one dropped. Re-running a partition replaces its
own entries and matches only against partitions that arrived before it, so the result does not
depend on re-runs. Every commit writes new files, then replaces index.json atomically, then
deletes what it no longer names: a killed run leaves the previous index intact. An flock on the
index serializes writers, so concurrent partitions cannot race.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from pipelines.contract import param, require
from pipelines.curation.minhash import MinHasher, normalize
from pipelines.lake import atomic_write_bytes, partition_dirname


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


NODE_BITS = 32  # a node packs (seq, position): partitions of up to 4 billion documents


def node_of(seq: int, rank: int) -> int:
    return (int(seq) << NODE_BITS) | int(rank)


def seq_range(seq: int) -> tuple[int, int]:
    """The first and last node a partition with this seq can hold."""
    return node_of(seq, 0), node_of(seq + 1, 0) - 1


@dataclass
class Link:
    """A candidate edge from a new document to the earliest earlier node it shares a key with."""

    node: int  # the new document
    target: int  # the earlier node
    kind: str  # exact | same | lsh


class _UnionFind:
    """Union-find over node numbers; a root is always its cluster's earliest node."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def resolve(seq: int, ids: list[str], sigs: np.ndarray, links: list[Link], targets: dict[int, tuple[str, np.ndarray]],
            config: DedupConfig) -> DedupResult:
    """Keep/drop for one partition from its links; `targets` holds (id, signature) of every earlier-partition
    node a link points at. Both the incremental index and the batch mode decide here."""
    base = node_of(seq, 0)

    def id_of(node: int) -> str:
        return ids[node - base] if node >= base else targets[node][0]

    def signature(node: int) -> np.ndarray | None:
        return sigs[node - base] if node >= base else targets[node][1]

    uf = _UnionFind()
    exact_nodes: set[int] = set()
    same_nodes: set[int] = set()  # the same page seen before (its WARC and its WET copy share an id)
    verified = 0
    for link in links:
        if link.kind != "lsh":
            (exact_nodes if link.kind == "exact" else same_nodes).add(link.node)
            uf.union(link.node, link.target)
            continue
        close_enough = MinHasher.estimate_jaccard(signature(link.node), signature(link.target)) >= config.threshold - config.verify_slack
        if not config.verify or close_enough:
            verified += 1
            uf.union(link.node, link.target)
    n = len(ids)
    keep = np.ones(n, dtype=bool)
    reason: list[str | None] = [None] * n
    dup_of: list[str | None] = [None] * n
    score: list[float | None] = [None] * n
    cluster = []
    for i in range(n):
        node = base + i
        root = uf.find(node)
        cluster.append(id_of(root))
        if root == node:
            continue
        keep[i] = False
        dup_of[i] = id_of(root)
        if node in same_nodes:
            reason[i], score[i] = "same_document", 1.0
        elif node in exact_nodes:
            reason[i], score[i] = "exact_duplicate", 1.0
        else:
            reason[i], score[i] = "near_duplicate", MinHasher.estimate_jaccard(sigs[i], signature(root))
    return DedupResult(keep, reason, dup_of, score, cluster, seq, len(links), verified)


INDEX_FILE = "index.json"  # names the live run and docs files; replaced last on every commit
LEGACY_REGISTRY = "registry.json"  # the first design's index (per-partition Parquet), converted on first use
NONE = np.iinfo(np.int64).max  # "no earlier node"
KINDS = {"hash": "exact", "id": "same", "band": "lsh"}  # what a shared key of each kind means
MERGE_FANOUT = 4  # size-tiered: this many runs of one level merge into one run of the next
MAX_RUN_ROWS = 1 << 27  # runs stop merging at this size (a merge holds its rows in RAM, 16 bytes each)


def hash_key(text_hash_hex: str) -> int:
    """The first 64 bits of the 128-bit text hash (links are checked against the full hash)."""
    return int(text_hash_hex[:16], 16)


def id_key(doc_id: str) -> int:
    return xxhash.xxh3_64_intdigest(doc_id.encode("utf-8"))


@dataclass
class Keyed:
    """(key, node) pairs sorted by key, then node: the first entry of a key is its earliest node."""

    keys: np.ndarray  # uint64
    nodes: np.ndarray  # int64

    @classmethod
    def sort(cls, keys: np.ndarray, nodes: np.ndarray) -> Keyed:
        order = np.lexsort((nodes, keys))
        return cls(np.ascontiguousarray(keys[order], dtype=np.uint64), np.ascontiguousarray(nodes[order], dtype=np.int64))

    def earliest(self, keys: np.ndarray, before: int) -> np.ndarray:
        """Per query key, the earliest node holding it if that node is < `before`, else NONE: one binary search each."""
        if not len(self.keys):
            return np.full(len(keys), NONE, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.nodes[at]
        return np.where((self.keys[at] == keys) & (found < before), found, NONE)

    def without(self, lo: int, hi: int) -> Keyed:
        keep = (self.nodes < lo) | (self.nodes > hi)
        return Keyed(self.keys[keep], self.nodes[keep])


def earliest_within(keys: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Per (key, node), the smallest other node of this same set with the key, if smaller; else NONE."""
    out = np.full(len(keys), NONE, dtype=np.int64)
    if not len(keys):
        return out
    order = np.lexsort((nodes, keys))
    k, n = keys[order], nodes[order]
    starts = np.r_[True, k[1:] != k[:-1]]
    first = n[np.maximum.accumulate(np.where(starts, np.arange(len(k)), 0))]
    out[order] = np.where(first < n, first, NONE)
    return out


def partition_keys(hasher: MinHasher, seq: int, ids: list[str], hashes: list[str], sigs: np.ndarray,
                   bands: np.ndarray | None = None) -> dict[str, Keyed]:
    """Every key a partition's documents hold, by kind, unsorted (node order); `bands` if already computed."""
    nodes = np.arange(len(ids), dtype=np.int64) + node_of(seq, 0)
    bands = hasher.band_keys(sigs) if bands is None else bands
    return {"hash": Keyed(np.array([hash_key(h) for h in hashes], dtype=np.uint64), nodes),
            "id": Keyed(np.array([id_key(d) for d in ids], dtype=np.uint64), nodes),
            "band": Keyed(bands.reshape(-1), np.repeat(nodes, hasher.bands))}


def empty_index() -> dict:
    return {"format": 2, "lsh": None, "partitions": {}, "docs": {}, "runs": []}


def _fsynced(path: Path, write) -> None:
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


class DedupIndex:
    """The index directory: `index.json` names the live files, written last (atomically) on every commit."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @contextlib.contextmanager
    def locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    # ---- the manifest and the files it names ---------------------------------------
    def manifest(self) -> dict:
        path = self.root / INDEX_FILE
        if path.exists():
            return json.loads(path.read_text())
        if (self.root / LEGACY_REGISTRY).exists():
            raise RuntimeError(f"{self.root} holds the Parquet dedup index of an earlier version: the next dedup run converts "
                               "it (DedupIndex.upgrade)")
        return empty_index()

    def upgrade(self, hasher: MinHasher) -> None:
        """Convert the first design's index (`registry.json` + `<partition>/docs.parquet`, signatures included) into
        this one, keeping every partition's seq; then delete the old files. Run under the lock."""
        if (self.root / INDEX_FILE).exists() or not (self.root / LEGACY_REGISTRY).exists():
            return
        registry = json.loads((self.root / LEGACY_REGISTRY).read_text())
        manifest = empty_index()
        self.check_lsh(manifest, hasher)
        for name, seq in sorted(registry.items(), key=lambda kv: kv[1]):
            path = self.root / partition_dirname(name) / "docs.parquet"
            table = pq.read_table(path, columns=["rank", "id", "text_hash", "signature"]).sort_by("rank") if path.exists() else None
            ids = table.column("id").to_pylist() if table else []
            hashes = table.column("text_hash").to_pylist() if table else []
            flat = table.column("signature").combine_chunks().flatten().to_numpy() if table else np.empty(0, np.uint32)
            if len(flat) != len(ids) * hasher.num_perm:
                raise ValueError(f"{path}: signatures of another length than num_perm={hasher.num_perm}; dedup with the "
                                 "DedupConfig that built it, or move dedup_index/ aside and re-run dedup over every partition")
            sigs = flat.astype(np.uint32).reshape(len(ids), hasher.num_perm)
            self.add(manifest, name, seq, ids, hashes, sigs, partition_keys(hasher, seq, ids, hashes, sigs))
        self.commit(manifest)
        for name in registry:
            shutil.rmtree(self.root / partition_dirname(name), ignore_errors=True)
            (self.root / f".{partition_dirname(name)}.lock").unlink(missing_ok=True)  # its directory swaps' lock
        (self.root / LEGACY_REGISTRY).unlink()

    def registry(self) -> dict[str, int]:
        return self.manifest()["partitions"]

    def _new_dir(self, kind: str) -> Path:
        path = self.root / kind / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def _write_run(self, keyed: dict[str, Keyed], level: int, seqs: list[int]) -> dict:
        path = self._new_dir("runs")
        for kind, k in keyed.items():
            _fsynced(path / f"{kind}.keys.npy", lambda fh, a=k.keys: np.save(fh, a))
            _fsynced(path / f"{kind}.nodes.npy", lambda fh, a=k.nodes: np.save(fh, a))
        return {"dir": path.relative_to(self.root).as_posix(), "level": level, "rows": int(len(keyed["band"].keys)),
                "seqs": sorted(seqs)}

    def _read_run(self, run: dict) -> dict[str, Keyed]:
        path = self.root / run["dir"]
        return {kind: Keyed(np.load(path / f"{kind}.keys.npy", mmap_mode="r"), np.load(path / f"{kind}.nodes.npy", mmap_mode="r"))
                for kind in KINDS}  # runs are never empty (an empty array cannot be memory-mapped)

    def _write_docs(self, ids: list[str], hashes: list[str], sigs: np.ndarray) -> str:
        path = self.root / "docs" / f"{uuid.uuid4().hex}.arrow"
        path.parent.mkdir(parents=True, exist_ok=True)
        sigs = np.ascontiguousarray(sigs, dtype=np.uint32)
        width = sigs.shape[1] * 4 if sigs.ndim == 2 else 0
        table = pa.table({"id": pa.array(ids, pa.string()), "text_hash": pa.array(hashes, pa.string()),
                          "signature": pa.array([row.tobytes() for row in sigs], pa.binary(width))})

        def write_arrow(fh):
            with pa.ipc.new_file(fh, table.schema) as writer:
                writer.write_table(table)

        _fsynced(path, write_arrow)  # uncompressed Arrow: memory-mapped, so reading one row does not read the file
        return path.relative_to(self.root).as_posix()

    def docs(self, manifest: dict, seq: int) -> pa.Table:
        """One indexed partition's `id`, `text_hash` and `signature` columns, memory-mapped."""
        return pa.ipc.open_file(pa.memory_map(str(self.root / manifest["docs"][str(seq)]))).read_all()

    def commit(self, manifest: dict) -> None:
        """Publish `manifest` (one atomic rename), then delete every run or docs directory it does not name:
        replaced ones, and those a killed writer left before publishing."""
        atomic_write_bytes(self.root / INDEX_FILE, json.dumps(manifest, indent=1, sort_keys=True).encode())
        self._collect_garbage(manifest)

    def _collect_garbage(self, manifest: dict) -> None:
        live = {r["dir"] for r in manifest["runs"]} | set(manifest["docs"].values())
        for kind in ("runs", "docs"):
            for path in sorted((self.root / kind).glob("*")) if (self.root / kind).is_dir() else []:
                if f"{kind}/{path.name}" not in live:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    @staticmethod
    def check_lsh(manifest: dict, hasher: MinHasher) -> None:
        """Refuse to mix signatures or band keys made with other MinHash/LSH parameters."""
        wanted = {"num_perm": hasher.num_perm, "ngram": hasher.ngram, "bands": hasher.bands, "rows": hasher.rows, "seed": hasher.seed}
        if manifest["lsh"] is None:
            manifest["lsh"] = wanted
        elif manifest["lsh"] != wanted:
            raise ValueError(f"the dedup index was built with {manifest['lsh']}, this run asks for {wanted}; keep the index's "
                             "DedupConfig or move dedup_index/ aside and re-run dedup over every partition")

    # ---- one partition ---------------------------------------------------------------
    def add(self, manifest: dict, partition: str, seq: int, ids: list[str], hashes: list[str], sigs: np.ndarray,
            keyed: dict[str, Keyed]) -> None:
        """Record a partition in `manifest` (replacing its earlier entries) and write its files; merge runs as they pile up."""
        lo, hi = seq_range(seq)
        runs = []
        for run in manifest["runs"]:
            if seq in run["seqs"]:  # a re-run: its old entries must not be found by later partitions
                kept = {kind: k.without(lo, hi) for kind, k in self._read_run(run).items()}
                run = self._write_run(kept, run["level"], [s for s in run["seqs"] if s != seq]) if len(kept["band"].keys) else None
            if run:
                runs.append(run)
        if ids:
            runs.append(self._write_run({kind: Keyed.sort(k.keys, k.nodes) for kind, k in keyed.items()}, 0, [seq]))
        manifest["runs"] = self._merged(runs)
        manifest["docs"][str(seq)] = self._write_docs(ids, hashes, sigs)
        manifest["partitions"][partition] = seq

    def _merged(self, runs: list[dict]) -> list[dict]:
        """Size-tiered merging: while the newest MERGE_FANOUT runs share a level, they become one run a level up."""
        while len(runs) >= MERGE_FANOUT:
            tail = runs[-MERGE_FANOUT:]
            if len({r["level"] for r in tail}) != 1 or sum(r["rows"] for r in tail) > MAX_RUN_ROWS:
                break
            parts = [self._read_run(r) for r in tail]
            merged = {kind: Keyed.sort(np.concatenate([p[kind].keys for p in parts]), np.concatenate([p[kind].nodes for p in parts]))
                      for kind in KINDS}
            runs = runs[:-MERGE_FANOUT] + [self._write_run(merged, tail[0]["level"] + 1, [s for r in tail for s in r["seqs"]])]
        return runs

    def deduplicate(self, partition: str, ids: list[str], texts: list[str], config: DedupConfig) -> DedupResult:
        """Decide keep/drop for one partition's documents (in file order) and record them in the index."""
        hasher = config.hasher()
        sigs = hasher.signatures(texts)
        hashes = [text_hash(t) for t in texts]
        with self.locked():
            self.upgrade(hasher)
            manifest = self.manifest()  # a killed writer's unnamed files go with this commit's garbage
            self.check_lsh(manifest, hasher)
            seq = manifest["partitions"].get(partition, max(manifest["partitions"].values(), default=-1) + 1)
            before = set(self.docs(manifest, seq).column("id").to_pylist()) if str(seq) in manifest["docs"] else set()
            keyed = partition_keys(hasher, seq, ids, hashes, sigs)
            links, targets = self._links(manifest, seq, ids, hashes, keyed)
            self.add(manifest, partition, seq, ids, hashes, sigs, keyed)
            self.commit(manifest)
        result = resolve(seq, ids, sigs, links, targets, config)
        result.vanished = sorted(before - set(ids))
        return result

    def _links(self, manifest: dict, seq: int, ids: list[str], hashes: list[str],
               keyed: dict[str, Keyed]) -> tuple[list[Link], dict[int, tuple[str, np.ndarray]]]:
        """Each document's link to the earliest earlier node per key: earlier partitions by binary search in
        every run (only the runs' matching entries are read), earlier positions of this partition by sorting."""
        lo, _ = seq_range(seq)
        runs = [self._read_run(run) for run in manifest["runs"]]
        found: list[tuple[int, int, str]] = []
        for kind, k in keyed.items():
            best = earliest_within(k.keys, k.nodes)
            for run in runs:
                best = np.minimum(best, run[kind].earliest(k.keys, lo))
            hit = best != NONE
            found += {(int(a), int(b), KINDS[kind]) for a, b in zip(k.nodes[hit], best[hit])}
        older: dict[int, set[int]] = {}  # earlier partition -> its nodes that links point at, each read once
        for _, target, _ in found:
            if target < lo:
                older.setdefault(target >> NODE_BITS, set()).add(target)
        targets: dict[int, tuple[str, str, np.ndarray]] = {}
        for target_seq, nodes in older.items():
            docs = self.docs(manifest, target_seq)
            for node in nodes:
                row = docs.slice(node - node_of(target_seq, 0), 1).to_pylist()[0]
                targets[node] = (row["id"], row["text_hash"], np.frombuffer(row["signature"], dtype=np.uint32))
        base, links = node_of(seq, 0), []
        for node, target, kind in sorted(found):
            t_id, t_hash = (ids[target - base], hashes[target - base]) if target >= lo else targets[target][:2]
            if (kind == "exact" and t_hash != hashes[node - base]) or (kind == "same" and t_id != ids[node - base]):
                continue  # a 64-bit key collision, not the same text or page
            links.append(Link(node, target, kind))
        return links, {node: (t_id, sig) for node, (t_id, _, sig) in targets.items()}
