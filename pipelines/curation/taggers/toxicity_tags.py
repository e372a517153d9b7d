"""Toxicity tagger: a score per line; curated_web drops toxic lines (or whole documents)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from pipelines.contract import Check, CheckResult, config_to_dict, param, require
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
    word_lists: bool = param(True, "a language with neither its own model nor the default scorer (`toxicity_languages`) "
                                   "is scored by its word list (LDNOOBW, C4's rule), where one exists")
    toxicity_languages: tuple[str, ...] = param(("en",), "languages the default scorer was trained on; it does not score "
                                                         "others (the shipped classifier flags ordinary German text); "
                                                         "empty = all")


@dataclass(frozen=True)
class ToxicityFilterConfig:
    toxicity_threshold: float = param(0.5, "a line (or document) scoring at least this is toxic")
    toxicity_mode: Literal["lines", "document"] = param("lines", "lines: drop offending lines; document: drop the whole document")
    max_toxic_fraction: float = param(0.5, "lines mode: drop the document when more of its characters than this are toxic")
    language_thresholds: dict[str, float] = param({}, "per-language threshold, e.g. the one `toxicity_train` calibrated "
                                                      "for the language's model")

    def __post_init__(self):
        require(0 <= self.toxicity_threshold <= 1, self, "toxicity_threshold", "must be in [0, 1]")
        require(0 <= self.max_toxic_fraction <= 1, self, "max_toxic_fraction", "must be in [0, 1]")
        require(all(0 <= t <= 1 for t in self.language_thresholds.values()), self, "language_thresholds",
                "every threshold must be in [0, 1]")

    def threshold(self, lang: str) -> float:
        return self.language_thresholds.get(lang, self.toxicity_threshold)


UNSCORED = "none"  # the `toxicity_scorer` of a document no scorer covers (its scores are 0 and never count)


def _scorer_for(code: str, cfg: ToxicityTagConfig, default: toxicity.LineScorer) -> toxicity.LineScorer | None:
    """The language's trained model, else the default scorer where it knows the language, else the language's word list."""
    if code in cfg.language_models:
        return toxicity.TrainedScorer(cfg.language_models[code])
    if not cfg.toxicity_languages or code in cfg.toxicity_languages:
        return default
    if cfg.word_lists and toxicity.has_word_list(code):
        return toxicity.WordListScorer(code)
    return None


def _tag(texts: list[str], cfg: ToxicityTagConfig, lang: list[str]):
    default = toxicity.make_scorer(cfg.model_path, cfg.label)
    scorers = {code: s for code in sorted(set(lang)) if (s := _scorer_for(code, cfg, default))}
    by_language: dict[str, list[int]] = {}
    for i, code in enumerate(lang):
        by_language.setdefault(code, []).append(i)
    line_scores: list = [None] * len(texts)
    for code, rows in by_language.items():
        docs = [texts[i] for i in rows]
        scored = toxicity.score_documents(docs, scorers[code]) if code in scorers else \
            [np.zeros(t.count("\n") + 1, dtype=np.float32) for t in docs]
        for i, scores in zip(rows, scored):
            line_scores[i] = scores
    doc_scores = [float(s.max()) if len(s) else 0.0 for s in line_scores]
    hist = np.histogram(doc_scores, bins=10, range=(0, 1))[0].tolist()
    columns = {"toxicity": pa.array(doc_scores, pa.float32()),
               "line_toxicity": pa.array([s.tolist() for s in line_scores], pa.list_(pa.float32())),
               "toxicity_scorer": pa.array([scorers[code].name if code in scorers else UNSCORED for code in lang])}
    return columns, {"scorer": default.name, "language_scorers": {c: s.name for c, s in sorted(scorers.items())},
                     "unscored_documents": sum(code not in scorers for code in lang),
                     "score_histogram": {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": n for i, n in enumerate(hist)}}


def _applies(row: dict) -> bool:
    return row["toxicity_scorer"] != UNSCORED


def _reject(row: dict, cfg: ToxicityFilterConfig) -> Rejection | None:
    if cfg.toxicity_mode == "document" and _applies(row) and row["toxicity"] >= cfg.threshold(row["lang"]):
        return Rejection("toxicity", "toxicity:document", row["toxicity"])
    return None


def _drop_toxic_lines(text: str, row: dict, cfg: ToxicityFilterConfig):
    line_scores = (row["line_toxicity"] or []) if _applies(row) and cfg.toxicity_mode == "lines" else []
    lines = text.split("\n")
    bad = [i for i, s in enumerate(line_scores) if s >= cfg.threshold(row["lang"])]
    if bad:
        if sum(len(lines[i]) for i in bad) > cfg.max_toxic_fraction * max(len(text), 1):
            return Rejection("toxicity", "toxicity:mostly_toxic", row["toxicity"], f"{len(bad)}/{len(lines)} lines")
        drop = set(bad)
        lines = [x for i, x in enumerate(lines) if i not in drop]
    return "\n".join(lines), {"toxic_lines_removed": len(bad)}


def _kept_languages_screened(lake, manifest: dict) -> CheckResult:
    kept = manifest["config"]["language_id"]["keep_languages"]
    # tags written before word lists existed lack the newer keys (and were scored without word lists)
    tag = config_to_dict(ToxicityTagConfig(word_lists=False)) | lake.read_manifest("toxicity_tags", manifest["partition"])["config"]
    if not tag["toxicity_languages"]:
        return CheckResult(True, {"unscreened": []})
    screened = set(tag["toxicity_languages"]) | set(tag["language_models"])
    if tag["word_lists"]:
        screened |= {code for code in kept if toxicity.has_word_list(code)}
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
                          "scorer's languages, a trained model, or a word list); a warning names the rest.",
                          _kept_languages_screened, blocking=False),),
)
