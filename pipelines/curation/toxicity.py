"""Toxicity scoring per line, with pluggable scorers.

Default: the offensive-language classifier shipped in `alt-profanity-check`
(linear model over character n-grams, trained offline; works with no network).
Alternative: any fastText classifier by path (e.g. Dolma's Jigsaw hate/NSFW
taggers), scoring the probability of a chosen label.

Scores are stored per line so the filter can either drop a document or only its
offending lines, and thresholds can change without re-scoring.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import numpy as np


class LineScorer(Protocol):
    name: str

    def score(self, lines: list[str]) -> np.ndarray: ...


class ProfanityCheckScorer:
    name = "alt-profanity-check"

    def score(self, lines: list[str]) -> np.ndarray:
        if not lines:
            return np.zeros(0, dtype=np.float32)
        from profanity_check.profanity_check import vectorizer

        linear = _profanity_as_linear()
        if linear is None:
            from profanity_check import predict_prob

            return np.asarray(predict_prob(lines), dtype=np.float32)
        weights, intercept, a, b = linear
        margins = np.asarray(vectorizer.transform(lines) @ weights) + intercept  # (lines, classifiers)
        return (1.0 / (1.0 + np.exp(a * margins + b))).mean(axis=1).astype(np.float32)


@lru_cache(maxsize=1)
def _profanity_as_linear():
    """alt-profanity-check's model (5 sigmoid-calibrated LinearSVCs, averaged) as one weight matrix.

    `predict_prob` computes exactly this, but sklearn's per-call checks cost about 2.5 ms
    whatever the batch size; the serving filters score one short answer at a time. Returns None
    (and the scorer uses `predict_prob`) if the shipped model ever has another shape; a test
    checks both give the same probabilities.
    """
    from profanity_check.profanity_check import model

    cals = getattr(model, "calibrated_classifiers_", [])
    if not cals or not all(c.method == "sigmoid" and len(c.calibrators) == 1 and hasattr(c.estimator, "coef_") for c in cals):
        return None
    weights = np.stack([c.estimator.coef_.ravel() for c in cals], axis=1)
    intercept = np.array([float(np.ravel(c.estimator.intercept_)[0]) for c in cals])
    a = np.array([c.calibrators[0].a_ for c in cals], dtype=np.float64)
    b = np.array([c.calibrators[0].b_ for c in cals], dtype=np.float64)
    return weights, intercept, a, b


class FastTextScorer:
    """P(label) from a fastText supervised model (Jigsaw-style `__label__toxic`)."""

    def __init__(self, model_path: str, label: str = "__label__toxic"):
        self.name = f"fasttext:{model_path}"
        self.model_path, self.label = model_path, label

    def score(self, lines: list[str]) -> np.ndarray:
        model = _load_fasttext(self.model_path)
        labels, probs = model.predict([" ".join(x.split()) for x in lines], k=-1)
        return np.array([dict(zip(ls, ps)).get(self.label, 0.0) for ls, ps in zip(labels, probs)], dtype=np.float32)


@lru_cache(maxsize=2)
def _load_fasttext(path: str):
    import fasttext

    return fasttext.load_model(path)


def make_scorer(model_path: str | None = None, label: str = "__label__toxic") -> LineScorer:
    return FastTextScorer(model_path, label) if model_path else ProfanityCheckScorer()


def score_documents(texts: list[str], scorer: LineScorer) -> list[np.ndarray]:
    """Per-document arrays of line scores (lines = text split on newlines), scored in one batch."""
    per_doc = [t.split("\n") for t in texts]
    flat = [line for lines in per_doc for line in lines]
    scores = scorer.score(flat) if flat else np.zeros(0, dtype=np.float32)
    out, pos = [], 0
    for lines in per_doc:
        out.append(scores[pos:pos + len(lines)])
        pos += len(lines)
    return out
