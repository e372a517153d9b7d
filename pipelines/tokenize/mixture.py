"""Weighted source mixture, planned in tokens.

Each source s has A_s tokens available; its target is T_s = w_s * budget. The plan
takes floor(T_s / A_s) full passes (epochs) over the source plus a seeded random
subset of documents for the remainder, or, below one epoch, a seeded random subset
that stops at the target (the last document is taken only if that lands closer to
the target, so the error is at most half a document). Sources
are never repeated past `max_epochs`; a source that cannot reach its target is
reported, not silently re-weighted.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# LLaMA-1 (Touvron et al. 2023, table 1) mapped onto our sources: CommonCrawl and C4
# are both web text, GitHub -> code, Wikipedia -> wiki, Books -> books, ArXiv -> arxiv,
# StackExchange -> qa.
PRESETS: dict[str, dict[str, float]] = {
    "llama1": {"web": 0.67 + 0.15, "code": 0.045, "wiki": 0.045, "books": 0.045, "arxiv": 0.025, "qa": 0.02},
    "uniform": {"web": 1 / 6, "code": 1 / 6, "wiki": 1 / 6, "books": 1 / 6, "arxiv": 1 / 6, "qa": 1 / 6},
    "web_only": {"web": 1.0},
}


@dataclass(frozen=True)
class SourcePlan:
    source: str
    weight: float
    available_tokens: int
    target_tokens: int
    selected_tokens: int
    epochs: float
    documents: int
    capped: bool
    mean_doc_tokens: float

    @property
    def granular(self) -> bool:
        """Enough documents behind the target for a share to be hit within a small error."""
        return self.target_tokens >= 20 * self.mean_doc_tokens


def normalize_weights(weights: dict[str, float]) -> dict[str, float]:
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"mixture weights must be non-negative and sum to > 0, got {weights}")
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items() if v > 0}


def auto_budget(weights: dict[str, float], available: dict[str, int], max_epochs: float, web_epochs: float = 1.0) -> int:
    """The largest budget in which no source repeats more than allowed (web text at most once)."""
    limits = [available.get(s, 0) * (web_epochs if s == "web" else max_epochs) / w for s, w in weights.items()]
    return int(min(limits)) if limits else 0


def plan_source(doc_tokens: list[int], target: int, max_epochs: float, rng: random.Random) -> tuple[list[int], int, bool]:
    """Indices of documents to emit (repeats allowed) and the tokens they hold."""
    available = sum(doc_tokens)
    if available == 0 or target <= 0:
        return [], 0, target > 0
    capped = target > available * max_epochs
    target = min(target, int(available * max_epochs))
    full = int(target // available)
    picks = list(range(len(doc_tokens))) * full
    got = available * full
    order = list(range(len(doc_tokens)))
    rng.shuffle(order)
    for i in order:
        if got >= target:
            break
        if got + doc_tokens[i] > target and got + doc_tokens[i] - target > target - got:
            break
        picks.append(i)
        got += doc_tokens[i]
    return picks, got, capped


def plan_mixture(tokens_by_source: dict[str, list[int]], weights: dict[str, float], budget: int, max_epochs: float,
                 seed: int) -> tuple[dict[str, list[int]], list[SourcePlan]]:
    weights = normalize_weights(weights)
    missing = sorted(set(weights) - set(tokens_by_source))
    if missing:
        raise ValueError(f"mixture weights name sources with no documents: {missing}; available: {sorted(tokens_by_source)}")
    picks, plans = {}, []
    for source in sorted(weights):
        rng = random.Random(f"{seed}:{source}")
        toks = tokens_by_source[source]
        target = int(round(weights[source] * budget))
        chosen, got, capped = plan_source(toks, target, max_epochs, rng)
        picks[source] = chosen
        available = sum(toks)
        plans.append(SourcePlan(source, weights[source], available, target, got, got / available if available else math.inf,
                                len(chosen), capped, available / max(len(toks), 1)))
    return picks, plans
