"""Toxicity tagger: a score per line; curated_web drops toxic lines (or whole documents)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from pipelines.contract import Check, CheckResult, param, require
from pipelines.curation import toxicity
from pipelines.curation.tagger import Rejection, Tagger


@dataclass(frozen=True)
class ToxicityTagConfig:
    model_path: str | None = param(None, "None = the shipped alt-profanity-check classifier (English); "
                                         "else a fastText classifier scoring `label`")
    label: str = param("__label__toxic", "the fastText label whose probability is the toxicity score")
    language_models: dict[str, str] = param({}, "per-language classifiers trained by `python -m "
                                                "pipelines.curation.toxicity_train`, e.g. {'de': 'models/tox_de.npz'}: "
                                                "documents in that language are scored by it instead")


@dataclass(frozen=True)
class ToxicityFilterConfig:
    toxicity_threshold: float = param(0.5, "a line (or document) scoring at least this is toxic")
    toxicity_mode: Literal["lines", "document"] = param("lines", "lines: drop offending lines; document: drop the whole document")
    max_toxic_fraction: float = param(0.5, "lines mode: drop the document when more of its characters than this are toxic")
    toxicity_languages: tuple[str, ...] = param(("en",), "languages the default scorer was trained on (its scores elsewhere "
                                                         "are ignored: the shipped classifier flags ordinary German text); "
                                                         "empty = all. Documents scored by a language model always count")
    language_thresholds: dict[str, float] = param({}, "per-language threshold, e.g. the one `toxicity_train` calibrated "
                                                      "for the language's model")

    def __post_init__(self):
        require(0 <= self.toxicity_threshold <= 1, self, "toxicity_threshold", "must be in [0, 1]")
        require(0 <= self.max_toxic_fraction <= 1, self, "max_toxic_fraction", "must be in [0, 1]")
        require(all(0 <= t <= 1 for t in self.language_thresholds.values()), self, "language_thresholds",
                "every threshold must be in [0, 1]")

    def threshold(self, lang: str) -> float:
        return self.language_thresholds.get(lang, self.toxicity_threshold)


def _tag(texts: list[str], cfg: ToxicityTagConfig, lang: list[str]):
    default = toxicity.make_scorer(cfg.model_path, cfg.label)
    scorers = {code: toxicity.TrainedScorer(path) for code, path in cfg.language_models.items()}
    by_scorer: dict[str | None, list[int]] = {}  # language with its own model (None: the default scorer) -> rows
    for i, code in enumerate(lang):
        by_scorer.setdefault(code if code in scorers else None, []).append(i)
    line_scores: list = [None] * len(texts)
    for code, rows in by_scorer.items():
        scored = toxicity.score_documents([texts[i] for i in rows], scorers[code] if code else default)
        for i, scores in zip(rows, scored):
            line_scores[i] = scores
    doc_scores = [float(s.max()) if len(s) else 0.0 for s in line_scores]
    hist = np.histogram(doc_scores, bins=10, range=(0, 1))[0].tolist()
    columns = {"toxicity": pa.array(doc_scores, pa.float32()),
               "line_toxicity": pa.array([s.tolist() for s in line_scores], pa.list_(pa.float32())),
               "toxicity_scorer": pa.array([scorers[code].name if code in scorers else default.name for code in lang])}
    return columns, {"scorer": default.name, "language_models": {c: s.name for c, s in scorers.items()},
                     "score_histogram": {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": n for i, n in enumerate(hist)}}


def _applies(row: dict, cfg: ToxicityFilterConfig) -> bool:
    """A language model's score always counts; the default scorer's only in the languages it knows."""
    trained = row["toxicity_scorer"].startswith(toxicity.TrainedScorer.PREFIX)
    return trained or not cfg.toxicity_languages or row["lang"] in cfg.toxicity_languages


def _reject(row: dict, cfg: ToxicityFilterConfig) -> Rejection | None:
    if cfg.toxicity_mode == "document" and _applies(row, cfg) and row["toxicity"] >= cfg.threshold(row["lang"]):
        return Rejection("toxicity", "toxicity:document", row["toxicity"])
    return None


def _drop_toxic_lines(text: str, row: dict, cfg: ToxicityFilterConfig):
    line_scores = (row["line_toxicity"] or []) if _applies(row, cfg) and cfg.toxicity_mode == "lines" else []
    lines = text.split("\n")
    bad = [i for i, s in enumerate(line_scores) if s >= cfg.threshold(row["lang"])]
    if bad:
        if sum(len(lines[i]) for i in bad) > cfg.max_toxic_fraction * max(len(text), 1):
            return Rejection("toxicity", "toxicity:mostly_toxic", row["toxicity"], f"{len(bad)}/{len(lines)} lines")
        drop = set(bad)
        lines = [x for i, x in enumerate(lines) if i not in drop]
    return "\n".join(lines), {"toxic_lines_removed": len(bad)}


def _kept_languages_screened(lake, manifest: dict) -> CheckResult:
    cfg = manifest["config"]
    kept, tox = cfg["language_id"]["keep_languages"], cfg["toxicity_tags"]
    if not tox["toxicity_languages"]:
        return CheckResult(True, {"unscreened": []})
    screened = set(tox["toxicity_languages"]) | set(tox["language_thresholds"])
    unscreened = sorted(set(kept) - screened) if kept else ["(every language but " + ", ".join(sorted(screened)) + ")"]
    return CheckResult(not unscreened, {"unscreened": unscreened},
                       f"kept without toxicity filtering: {unscreened}; train a model per language with "
                       "`python -m pipelines.curation.toxicity_train` and set language_models/language_thresholds"
                       if unscreened else "")


TAGGER = Tagger(
    name="toxicity_tags",
    description="Toxicity score of every line (the document's score is its worst line).",
    attributes=pa.schema([("toxicity", pa.float32()), ("line_toxicity", pa.list_(pa.float32())),
                          ("toxicity_scorer", pa.string())]),
    tag=_tag, needs=("lang",), tag_config=ToxicityTagConfig, filter_config=ToxicityFilterConfig, reject=_reject, rewrite=_drop_toxic_lines,
    carry=(pa.field("toxicity", pa.float32()), pa.field("toxic_lines_removed", pa.int32())),
    kept_summary=lambda rows: {"toxic_lines_removed": sum(r["toxic_lines_removed"] for r in rows)},
    kinds=("python", "parquet", "scikitlearn"),
    curated_checks=(Check("kept_languages_screened_for_toxicity", "Every kept language has a toxicity scorer (the default "
                          "scorer's languages, or a trained model with its threshold); a warning names the rest.",
                          _kept_languages_screened, blocking=False),),
)
