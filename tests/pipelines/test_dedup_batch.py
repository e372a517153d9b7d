"""Batch dedup (a whole snapshot at once) decides exactly as the incremental index does, partition by partition."""

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.curation.dedup import DedupConfig, DedupIndex
from pipelines.curation.dedup_batch import batch_deduplicate
from pipelines.engine import Engine, EngineConfig
from pipelines.sample.text import TextGenerator


def _snapshot(tmp_path, partitions=4, seed=0):
    """Partitions mixing exact copies, drifting near-duplicate chains (each step a few more words
    changed, so A~B and B~C without A~C), pages seen again under the same id, and unique pages."""
    rng = random.Random(seed)
    gen = TextGenerator(rng)
    docs = []
    for c in range(12):
        words = " ".join(gen.paragraphs("en", "city", 4)).split()
        for step in range(4):
            for _ in range(step * 4):
                words[rng.randrange(len(words))] = rng.choice(["harbour", "violet", "ledger", "quartz"])
            docs.append((f"chain{c}-{step}", " ".join(words)))
        docs.append((f"copy{c}", " ".join(words)))
    docs += [(f"unique{k}", "\n".join(gen.paragraphs("en", "science", 3))) for k in range(20)]
    docs += [docs[k] for k in range(0, 30, 3)]  # the same pages again (same id): a WARC and its WET
    rng.shuffle(docs)
    files = []
    for p in range(partitions):
        part = docs[p::partitions]
        path = tmp_path / f"p{p}.parquet"
        pq.write_table(pa.table({"id": [d for d, _ in part], "text": [t for _, t in part]}), path)
        files.append((f"crawl-{p}.warc.gz", path))
    return files


def _decisions(res):
    return list(res.keep), res.reason, res.dup_of, res.cluster, [None if s is None else round(s, 6) for s in res.score]


@pytest.mark.parametrize("partitions", [4, 17])  # 17: runs merged twice over (MERGE_FANOUT 4)
def test_batch_gives_the_incremental_clusters_and_an_index_that_goes_on(tmp_path, partitions):
    files = _snapshot(tmp_path, partitions)
    config = DedupConfig()
    incremental = DedupIndex(tmp_path / "incremental")
    expected = {}
    for name, path in files:
        t = pq.read_table(path)
        expected[name] = incremental.deduplicate(name, t.column("id").to_pylist(), t.column("text").to_pylist(), config)
    batch_index = DedupIndex(tmp_path / "batch")
    got = batch_deduplicate(batch_index, files, config, engine=Engine(EngineConfig(workers=2)))
    assert list(got) == [name for name, _ in files]
    for name in expected:
        assert _decisions(got[name]) == _decisions(expected[name]), name
        assert got[name].seq == expected[name].seq
    reasons = {r for res in got.values() for r in res.reason if r}
    assert reasons == {"exact_duplicate", "near_duplicate", "same_document"}  # the snapshot exercises every link kind
    assert sum(int((~res.keep).sum()) for res in got.values()) >= 25
    assert batch_index.registry() == incremental.registry()
    assert len(incremental.manifest()["runs"]) <= 4  # merged, not one run per partition
    # a partition after the snapshot sees the same index either way
    extra = pq.read_table(files[0][1])
    ids, texts = [f"late-{d}" for d in extra.column("id").to_pylist()], extra.column("text").to_pylist()
    late_a = incremental.deduplicate("late", ids, texts, config)
    late_b = batch_index.deduplicate("late", ids, texts, config)
    assert _decisions(late_a) == _decisions(late_b) and not late_b.keep.any()


def test_batch_refuses_a_used_index_and_a_partition_listed_twice(tmp_path):
    files = _snapshot(tmp_path, partitions=2)
    index = DedupIndex(tmp_path / "index")
    with pytest.raises(ValueError, match="twice"):
        batch_deduplicate(index, [files[0], files[0]], DedupConfig(), engine=Engine(EngineConfig(workers=1)))
    batch_deduplicate(index, files, DedupConfig(), engine=Engine(EngineConfig(workers=1)))
    with pytest.raises(ValueError, match="already holds partitions"):
        batch_deduplicate(index, files, DedupConfig(), engine=Engine(EngineConfig(workers=1)))


def test_an_empty_partition_in_a_snapshot(tmp_path):
    files = _snapshot(tmp_path, partitions=2)
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), empty)
    got = batch_deduplicate(DedupIndex(tmp_path / "index"), [files[0], ("empty", empty), files[1]], DedupConfig(),
                            engine=Engine(EngineConfig(workers=2)))
    assert len(got["empty"].keep) == 0 and got[files[1][0]].seq == 2
    assert np.asarray(got[files[0][0]].keep).any()
