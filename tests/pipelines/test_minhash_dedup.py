import multiprocessing as mp

import numpy as np
import pytest

from pipelines.curation.dedup import DedupConfig, DedupIndex
from pipelines.curation.minhash import MinHasher, lsh_params, normalize, shingle_hashes
from pipelines.sample.dedup_eval import labeled_pairs, lsh_accuracy
from pipelines.sample.text import TextGenerator

TEXT = "The city council announced plans to improve the new bus network in Bristol last week, said Sarah Collins."


def test_normalization_folds_case_digits_punctuation_and_diacritics():
    assert normalize("Héllo, WÖRLD! In 2024… café") == "hello world in 0000 cafe"
    assert normalize("") == "" and normalize("!!!") == ""
    assert normalize("日本語") == "日 本 語"  # CJK characters are words


def test_signatures_are_identical_across_instances_and_batches():
    docs = [TEXT, TEXT.upper(), "", "短い日本語の文章です。", TEXT * 300]
    a, b = MinHasher(seed=1), MinHasher(seed=1)
    batch = a.signatures(docs)
    assert np.array_equal(batch, b.signatures(docs))
    assert np.array_equal(batch[0], batch[1])  # case does not matter
    for i, d in enumerate(docs):
        assert np.array_equal(batch[i], a.signatures([d])[0])
    assert not np.array_equal(batch[0], MinHasher(seed=2).signatures([TEXT])[0])
    assert (batch[2] == np.iinfo(np.uint32).max).all()  # empty text matches nothing


def test_short_text_still_has_a_shingle():
    assert len(shingle_hashes("two words", 5)) == 1


def test_lsh_params_follow_the_threshold():
    b, r = lsh_params(0.8, 112)
    assert b * r <= 112 and 0.7 < (1 / b) ** (1 / r) < 0.9
    with pytest.raises(ValueError):
        MinHasher(num_perm=64, bands=14, rows=8)


def test_near_duplicate_accuracy_on_labeled_pairs():
    report = lsh_accuracy(labeled_pairs(300, seed=3))
    assert report["recall_at_0.9"] >= 0.95
    assert report["precision"] >= 0.85 and report["recall"] >= 0.85


def _cluster_docs(n_clusters=6, copies=4, seed=0):
    import random

    rng = random.Random(seed)
    gen = TextGenerator(rng)
    ids, texts, cluster_of = [], [], []
    for c in range(n_clusters):
        base = "\n".join(gen.paragraphs("en", "city", 4))
        for k in range(copies):
            text = base if k == 0 else base.replace(".", "!", 1) if k % 2 else base + " Updated."
            ids.append(f"c{c}-{k}")
            texts.append(text)
            cluster_of.append(c)
    order = list(range(len(ids)))
    rng.shuffle(order)
    return [ids[i] for i in order], [texts[i] for i in order], [cluster_of[i] for i in order]


def test_planted_clusters_each_lose_exactly_n_minus_1(tmp_path):
    ids, texts, clusters = _cluster_docs()
    res = DedupIndex(tmp_path).deduplicate("p0", ids, texts, DedupConfig())
    kept = [c for c, k in zip(clusters, res.keep) if k]
    assert sorted(kept) == list(range(6))
    first = {}
    for i, c in enumerate(clusters):
        first.setdefault(c, i)
    assert all(res.keep[first[c]] for c in range(6))  # the earliest copy survives
    for i in np.nonzero(~res.keep)[0]:
        assert res.dup_of[i] == ids[first[clusters[i]]]
        assert res.reason[i] in ("exact_duplicate", "near_duplicate")


def test_incremental_index_catches_cross_partition_duplicates_and_reruns_are_stable(tmp_path):
    ids, texts, clusters = _cluster_docs(4, 2, seed=1)
    index = DedupIndex(tmp_path)
    first = index.deduplicate("p0", [f"a{i}" for i in ids[:4]], texts[:4], DedupConfig())
    second = index.deduplicate("p1", [f"b{i}" for i in ids[4:]], texts[4:], DedupConfig())
    older = {clusters[i] for i in range(4)}
    for j, k in enumerate(second.keep):
        assert k == (clusters[4 + j] not in older) or clusters[4 + j] in [clusters[4 + x] for x in range(j)]
    again = index.deduplicate("p0", [f"a{i}" for i in ids[:4]], texts[:4], DedupConfig())  # re-run of an old partition
    assert list(again.keep) == list(first.keep) and again.seq == first.seq
    assert index.registry() == {"p0": 0, "p1": 1}


def _dedup_worker(root, name, texts):
    DedupIndex(root).deduplicate(name, [f"{name}-{i}" for i in range(len(texts))], texts, DedupConfig())


def test_concurrent_partitions_do_not_corrupt_the_index(tmp_path):
    ids, texts, _ = _cluster_docs(3, 2, seed=2)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_dedup_worker, args=(tmp_path, f"p{k}", texts)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    index = DedupIndex(tmp_path)
    assert sorted(index.registry().values()) == [0, 1, 2, 3]
    # whichever ran first kept one per cluster; every later partition is entirely duplicate
    results = {name: index.deduplicate(name, [f"{name}-{i}" for i in range(len(texts))], texts, DedupConfig())
               for name in index.registry()}
    kept = sorted(int(r.keep.sum()) for r in results.values())
    assert kept == [0, 0, 0, 3]


def test_a_page_in_its_warc_and_its_wet_is_one_document(sample_dir, tmp_path):
    from pipelines.contract import run_stage
    from pipelines.curation.stages import DEDUP
    from pipelines.ingest import ingest_crawl_file
    from pipelines.lake import Lake

    wet = next(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" in p.name)
    warc = wet.replace(".wet", "")
    lake = Lake(tmp_path / "lake")
    for key in (warc, wet):
        ingest_crawl_file(lake, sample_dir / "crawl", key)
        run_stage(DEDUP, lake, key)
    con = lake.connect()
    assert con.execute("SELECT count(*) FROM (SELECT id FROM deduped GROUP BY id HAVING count(*) > 1)").fetchone()[0] == 0
    paired = con.execute(f"SELECT count(*) FROM rejection_ledger WHERE partition = '{wet}' AND reason = 'same_document'").fetchone()[0]
    assert paired > 0


def test_a_rerun_after_merges_removes_its_old_entries_from_every_run(tmp_path):
    from pipelines.curation.dedup import MERGE_FANOUT

    index, config = DedupIndex(tmp_path), DedupConfig()
    _, texts, _ = _cluster_docs(MERGE_FANOUT + 2, 1, seed=4)  # one unique text per partition
    for k, text in enumerate(texts):
        index.deduplicate(f"p{k}", [f"p{k}-0"], [text], config)
    assert any(len(run["seqs"]) == MERGE_FANOUT for run in index.manifest()["runs"])  # p0..p3 were merged into one run
    replacement = _cluster_docs(1, 1, seed=5)[1][0]
    index.deduplicate("p1", ["p1-new"], [replacement], config)  # p1's file changed
    late = index.deduplicate("late", ["late-old", "late-new"], [texts[1], replacement], config)
    assert list(late.keep) == [True, False]  # p1's old text is no longer indexed; its new one is
    assert late.dup_of[1] == "p1-new"
    assert sum(len(run["seqs"]) for run in index.manifest()["runs"]) == len(texts) + 1


def test_an_index_of_the_first_design_is_converted_on_first_use(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.curation.dedup import text_hash

    config = DedupConfig()
    hasher = config.hasher()
    _, texts, _ = _cluster_docs(3, 1, seed=6)
    sigs = hasher.signatures(texts)
    (tmp_path / "p0").mkdir()  # the layout the Parquet index wrote: registry.json + <partition>/docs.parquet
    pq.write_table(pa.table({"seq": [0] * 3, "partition": ["p0"] * 3, "id": ["old0", "old1", "old2"], "rank": [0, 1, 2],
                             "text_hash": [text_hash(t) for t in texts],
                             "signature": pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1), pa.uint32()), hasher.num_perm)}),
                   tmp_path / "p0" / "docs.parquet")
    (tmp_path / "registry.json").write_text(json.dumps({"p0": 0}))
    index = DedupIndex(tmp_path)
    with pytest.raises(RuntimeError, match="converts it"):
        index.registry()
    res = index.deduplicate("p1", ["new0", "new1"], [texts[1], "a page nobody wrote before, about nothing in particular"], config)
    assert list(res.keep) == [False, True] and res.dup_of[0] == "old1" and res.reason[0] == "exact_duplicate"
    assert index.registry() == {"p0": 0, "p1": 1}
    assert not (tmp_path / "registry.json").exists() and not (tmp_path / "p0").exists()
