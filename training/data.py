"""Token windows from the shards, a pure function of (seed, step, micro, rank): resumable by step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipelines.lake import manifest_of


class ShardWindows:
    """Random contiguous windows of `block` tokens (the model's context) over one split's shards.

    Inputs and labels are the same window; the loss shifts labels by one, so each window
    trains block - 1 predictions at exactly the context length the kernels are tuned for.
    """

    def __init__(self, shards_dir: Path, split: str, block: int):
        manifest = manifest_of(shards_dir)
        dtype = np.dtype(manifest["dtype"])
        files = [Path(shards_dir) / split / s["file"] for s in manifest["splits"][split]]
        arrays = [np.memmap(f, dtype=dtype, mode="r") for f in files if f.stat().st_size]
        self.tokens = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
        self.block = block
        if len(self.tokens) <= block:
            raise ValueError(f"{split} split of {shards_dir} has {len(self.tokens)} tokens, not more than one window of "
                             f"{block}: lower the model's context length or add data")
        self.fingerprint = manifest["content_hash"]

    def batch(self, seed: int, step: int, micro: int, rank: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([seed, step, micro, rank])
        starts = rng.integers(0, len(self.tokens) - self.block, size=batch_size)
        x = np.stack([self.tokens[s:s + self.block].astype(np.int64) for s in starts])
        t = torch.from_numpy(x)
        return t, t.clone()

    def fixed_batches(self, n: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows from the start of the split (same every evaluation)."""
        out = []
        stride = self.block
        for b in range(n):
            rows = [self.tokens[(b * batch_size + i) * stride:(b * batch_size + i + 1) * stride] for i in range(batch_size)]
            rows = [r for r in rows if len(r) == stride]
            if not rows:
                break
            t = torch.from_numpy(np.stack(rows).astype(np.int64))
            out.append((t, t.clone()))
        return out


def unigram_baseline(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of an add-one-smoothed unigram model fit on train, scored on val."""
    counts = np.bincount(train.astype(np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[val.astype(np.int64)].mean())
