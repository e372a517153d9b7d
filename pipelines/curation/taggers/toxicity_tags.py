"""Toxicity tagger: a score per line; curated_web drops toxic lines (or whole documents)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from pipelines.contract import param, require
from pipelines.curation import toxicity
from pipelines.curation.tagger import Rejection, Tagger


@dataclass(frozen=True)
class ToxicityTagConfig:
    model_path: str | None = param(None, "None = the shipped alt-profanity-check classifier (English); "
                                         "else a fastText classifier scoring `label`")
    label: str = param("__label__toxic", "the fastText label whose probability is the toxicity score")


@dataclass(frozen=True)
class ToxicityFilterConfig:
    toxicity_threshold: float = param(0.5, "a line (or document) scoring at least this is toxic")
    toxicity_mode: Literal["lines", "document"] = param("lines", "lines: drop offending lines; document: drop the whole document")
    max_toxic_fraction: float = param(0.5, "lines mode: drop the document when more of its characters than this are toxic")
    toxicity_languages: tuple[str, ...] = param(("en",), "languages the scorer was trained on (scores elsewhere are ignored: "
                                                         "the shipped classifier flags ordinary German text); empty = all")

    def __post_init__(self):
        require(0 <= self.toxicity_threshold <= 1, self, "toxicity_threshold", "must be in [0, 1]")
        require(0 <= self.max_toxic_fraction <= 1, self, "max_toxic_fraction", "must be in [0, 1]")


def _tag(texts: list[str], cfg: ToxicityTagConfig):
    scorer = toxicity.make_scorer(cfg.model_path, cfg.label)
    line_scores = toxicity.score_documents(texts, scorer)
    doc_scores = [float(s.max()) if len(s) else 0.0 for s in line_scores]
    hist = np.histogram(doc_scores, bins=10, range=(0, 1))[0].tolist()
    columns = {"toxicity": pa.array(doc_scores, pa.float32()),
               "line_toxicity": pa.array([s.tolist() for s in line_scores], pa.list_(pa.float32()))}
    return columns, {"scorer": scorer.name, "score_histogram": {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": n for i, n in enumerate(hist)}}


def _applies(row: dict, cfg: ToxicityFilterConfig) -> bool:
    return not cfg.toxicity_languages or row["lang"] in cfg.toxicity_languages


def _reject(row: dict, cfg: ToxicityFilterConfig) -> Rejection | None:
    if cfg.toxicity_mode == "document" and _applies(row, cfg) and row["toxicity"] >= cfg.toxicity_threshold:
        return Rejection("toxicity", "toxicity:document", row["toxicity"])
    return None


def _drop_toxic_lines(text: str, row: dict, cfg: ToxicityFilterConfig):
    line_scores = (row["line_toxicity"] or []) if _applies(row, cfg) and cfg.toxicity_mode == "lines" else []
    lines = text.split("\n")
    bad = [i for i, s in enumerate(line_scores) if s >= cfg.toxicity_threshold]
    if bad:
        if sum(len(lines[i]) for i in bad) > cfg.max_toxic_fraction * max(len(text), 1):
            return Rejection("toxicity", "toxicity:mostly_toxic", row["toxicity"], f"{len(bad)}/{len(lines)} lines")
        drop = set(bad)
        lines = [x for i, x in enumerate(lines) if i not in drop]
    return "\n".join(lines), {"toxic_lines_removed": len(bad)}


TAGGER = Tagger(
    name="toxicity_tags",
    description="Toxicity score of every line (the document's score is its worst line).",
    attributes=pa.schema([("toxicity", pa.float32()), ("line_toxicity", pa.list_(pa.float32()))]),
    tag=_tag, tag_config=ToxicityTagConfig, filter_config=ToxicityFilterConfig, reject=_reject, rewrite=_drop_toxic_lines,
    carry=(pa.field("toxicity", pa.float32()), pa.field("toxic_lines_removed", pa.int32())),
    kept_summary=lambda rows: {"toxic_lines_removed": sum(r["toxic_lines_removed"] for r in rows)},
    kinds=("python", "parquet", "scikitlearn"),
)
