"""Eval-set contamination: token n-gram overlap between evaluation texts and the training shards.

Every window of n tokens of the training split is hashed (vectorized rolling hash over
the memmapped shards); an evaluation item is contaminated if any of its own n-grams
appears there. Items shorter than n tokens are compared whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.lake import manifest_of

_BASE = np.uint64(1_000_003)


def _window_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    t = tokens.astype(np.uint64)
    if len(t) < n:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(len(t) - n + 1, dtype=np.uint64)
    for k in range(n):  # wraps mod 2^64 by design
        h = h * _BASE + t[k:len(t) - n + 1 + k]
    return h


def contamination(texts: list[str], tokenizer_dir: Path, shards_dir: Path, n: int = 8) -> dict:
    from pipelines.tokenize.tokenizer import load_for_encoding

    tok = load_for_encoding(Path(tokenizer_dir))
    manifest = manifest_of(shards_dir)
    dtype = np.dtype(manifest["dtype"])
    groups: dict[int, list[tuple[int, np.ndarray]]] = {}  # n-gram length -> (item index, its n-gram hashes)
    for i, text in enumerate(texts):
        ids = np.array(tok.encode(text).ids, dtype=np.uint64)
        if len(ids):
            length = min(n, len(ids))
            groups.setdefault(length, []).append((i, _window_hashes(ids, length)))
    hit = np.zeros(len(texts), dtype=bool)
    for shard in manifest["splits"]["train"]:
        tokens = np.asarray(np.memmap(Path(shards_dir) / "train" / shard["file"], dtype=dtype, mode="r"))
        for length, items in groups.items():
            train = _window_hashes(tokens, length)
            for i, hashes in items:
                if not hit[i]:
                    hit[i] = bool(np.isin(hashes, train).any())
    return {"items": len(texts), "contaminated": int(hit.sum()), "rate": float(hit.mean()) if len(texts) else 0.0, "ngram": n,
            "examples": [t for t, h in zip(texts, hit) if h][:5]}
