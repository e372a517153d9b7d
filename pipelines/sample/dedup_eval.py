"""Labeled near-duplicate pairs at known Jaccard levels, and LSH precision/recall on them.

A base document is a run of sentences from the sample lexicon; its variant has a
share of words substituted so that the exact 5-gram Jaccard lands across 0.3-1.0.
The exact Jaccard of every pair is computed from the shingle sets, so the labels
do not depend on MinHash.
"""

from __future__ import annotations

import random

import numpy as np

from pipelines.curation.dedup import DedupConfig
from pipelines.curation.minhash import shingle_hashes
from pipelines.sample.text import MAIN_LANGS, TOPICS, TextGenerator

_FILLER = ["river", "market", "winter", "garden", "station", "bridge", "letter", "museum", "harvest", "engine"]


def jaccard(a: str, b: str, ngram: int = 5) -> float:
    sa, sb = set(shingle_hashes(a, ngram).tolist()), set(shingle_hashes(b, ngram).tolist())
    return len(sa & sb) / max(len(sa | sb), 1)


def labeled_pairs(n_pairs: int = 400, seed: int = 0, ngram: int = 5) -> list[tuple[str, str, float]]:
    """(doc, variant, exact Jaccard) with Jaccard spread over roughly 0.3..1.0."""
    rng = random.Random(seed)
    gen = TextGenerator(rng)
    pairs = []
    for _ in range(n_pairs):
        lang = rng.choice(MAIN_LANGS)
        base = " ".join(gen.paragraphs(lang, rng.choice(TOPICS), 4))
        words = base.split()
        edit_rate = rng.choice([0.0, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08, 0.12])
        variant = [rng.choice(_FILLER) if rng.random() < edit_rate else w for w in words]
        var = " ".join(variant)
        pairs.append((base, var, jaccard(base, var, ngram)))
    return pairs


def lsh_accuracy(pairs, config: DedupConfig = DedupConfig()) -> dict:
    """Whether each pair becomes an LSH candidate that survives verification, binned by true Jaccard."""
    hasher = config.hasher()
    sigs = hasher.signatures([t for a, b, _ in pairs for t in (a, b)])
    keys = hasher.band_keys(sigs)
    found = []
    for i in range(len(pairs)):
        k1, k2 = keys[2 * i], keys[2 * i + 1]
        candidate = bool(np.any(k1 == k2))
        est = float(np.mean(sigs[2 * i] == sigs[2 * i + 1]))
        found.append(candidate and (not config.verify or est >= config.threshold - config.verify_slack))
    truth = [j >= config.threshold for _, _, j in pairs]
    tp = sum(f and t for f, t in zip(found, truth))
    fp = sum(f and not t for f, t in zip(found, truth))
    fn = sum(t and not f for f, t in zip(found, truth))
    bins = {}
    for lo in (0.0, 0.5, 0.7, 0.8, 0.9, 0.95):
        hi = {0.0: 0.5, 0.5: 0.7, 0.7: 0.8, 0.8: 0.9, 0.9: 0.95, 0.95: 1.01}[lo]
        sel = [f for f, (_, _, j) in zip(found, pairs) if lo <= j < hi]
        bins[f"{lo:.2f}-{min(hi, 1.0):.2f}"] = {"pairs": len(sel), "detected": sum(sel) / len(sel) if sel else None}
    high = [f for f, (_, _, j) in zip(found, pairs) if j >= 0.9]
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "recall_at_0.9": sum(high) / max(len(high), 1),
            "threshold": config.threshold, "bands": hasher.bands, "rows": hasher.rows, "bins": bins}
