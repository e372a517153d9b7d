"""Vectorized MinHash signatures and LSH band keys.

Text is normalized (lowercase, diacritics stripped, digits -> 0, punctuation ->
space), split into words (each CJK character is a word), and hashed as word
n-gram shingles. Shingle hashes are built from per-word xxh32 hashes with numpy,
and the permutations h_i(x) = (a_i * x + b_i) mod (2^61 - 1) are applied to a
whole batch of documents at once, then reduced per document with
`np.minimum.reduceat`: no Python call per shingle.

a_i, b_i < 2^32 and x < 2^32 keep a*x+b below 2^64, so the arithmetic is exact
(no silent uint64 overflow) and the family stays universal. The permutations
come from a seed, so every worker and every run computes identical signatures.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import xxhash

MASK_32 = np.uint64(0xFFFFFFFF)
_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_DIGIT = re.compile(r"\d")
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af])")
_MAX_BATCH_CELLS = 4_000_000  # shingles x permutations per numpy block (~32 MB of uint64)


def normalize(text: str) -> str:
    """Lowercase, strip diacritics, digits -> 0, punctuation -> space, collapse spaces."""
    text = text.lower()
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
        text = _CJK.sub(r" \1 ", text)
    text = _DIGIT.sub("0", text)
    text = _PUNCT.sub(" ", text)
    return " ".join(text.split())


_WORD_HASHES: dict[str, int] = {}


def _word_hashes(words: list[str]) -> np.ndarray:
    """xxh32 per word, memoized: web text reuses a small vocabulary, so most are lookups."""
    cache = _WORD_HASHES
    if len(cache) > 2_000_000:
        cache.clear()
    out = []
    for word in words:
        h = cache.get(word)
        if h is None:
            h = cache[word] = xxhash.xxh32_intdigest(word.encode("utf-8"))
        out.append(h)
    return np.array(out, dtype=np.uint64)


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """32-bit hashes of the word n-grams of normalized `text` (the whole text if it has < n words)."""
    words = normalize(text).split()
    if not words:
        return np.zeros(0, dtype=np.uint64)
    w = _word_hashes(words)
    if len(w) < n:
        n = len(w)
    m = len(w) - n + 1
    h = np.zeros(m, dtype=np.uint64)
    for k in range(n):  # polynomial combination of the n word hashes, mod 2^32
        h = (h * np.uint64(0x01000193) + w[k:k + m]) & MASK_32
    # murmur3 finalizer: spread the combined bits
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & MASK_32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & MASK_32
    h ^= h >> np.uint64(16)
    return np.unique(h)


@functools.lru_cache(maxsize=64)  # a pure function that every partition's hasher asks for
def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimizing weighted false positive/negative mass.

    P(candidate | J=s) = 1 - (1 - s^r)^b; false positives integrate it over s < threshold,
    false negatives integrate 1 - P over s >= threshold (the criterion datasketch uses).
    """
    def integrate(f, lo, hi, steps=200):
        dx = (hi - lo) / steps
        return sum(f(lo + (i + 0.5) * dx) for i in range(steps)) * dx

    best, best_err = (1, num_perm), math.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = integrate(lambda s, r=r, b=b: 1 - (1 - s ** r) ** b, 0.0, threshold)
            fn = integrate(lambda s, r=r, b=b: (1 - s ** r) ** b, threshold, 1.0)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


@dataclass(frozen=True)
class MinHasher:
    """Seeded MinHash over word n-grams with an LSH banding."""

    num_perm: int = 112
    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    def __post_init__(self):
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        rng = np.random.RandomState(self.seed)
        a = rng.randint(0, 1 << 63, size=self.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", rng.randint(0, 1 << 63, size=self.num_perm, dtype=np.uint64))

    @classmethod
    def for_threshold(cls, threshold: float, num_perm: int = 112, **kw) -> MinHasher:
        bands, rows = lsh_params(threshold, num_perm)
        return cls(num_perm=num_perm, bands=bands, rows=rows, **kw)

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32 signatures; an empty text gets all-max (matches nothing real)."""
        out = np.full((len(texts), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        shingles = [shingle_hashes(t, self.ngram) for t in texts]
        start = 0
        while start < len(texts):
            # group consecutive documents into one numpy block of bounded size
            end, cells = start, 0
            while end < len(texts) and (end == start or cells + len(shingles[end]) * self.num_perm <= _MAX_BATCH_CELLS):
                cells += len(shingles[end]) * self.num_perm
                end += 1
            block = [s for s in shingles[start:end]]
            lengths = np.array([len(s) for s in block])
            nonempty = np.nonzero(lengths)[0]
            if len(nonempty):
                x = np.concatenate([block[i] for i in nonempty])
                hv = x[:, None] * self._a[None, :]  # wraps mod 2^64 by design
                hv += self._b[None, :]
                hv >>= np.uint64(32)
                offsets = np.concatenate([[0], np.cumsum(lengths[nonempty])[:-1]])
                out[start + nonempty] = np.minimum.reduceat(hv, offsets, axis=0).astype(np.uint32)
            start = end
        return out

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n_docs, bands) uint64 keys: xxh64 of each band's rows, seeded by the band index."""
        n = signatures.shape[0]
        keys = np.empty((n, self.bands), dtype=np.uint64)
        for b in range(self.bands):
            chunk = np.ascontiguousarray(signatures[:, b * self.rows:(b + 1) * self.rows])
            for i in range(n):
                keys[i, b] = xxhash.xxh64_intdigest(chunk[i].tobytes(), seed=b)
        return keys

    @staticmethod
    def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
        return float(np.mean(sig_a == sig_b))
