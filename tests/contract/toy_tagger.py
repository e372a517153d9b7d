"""A toy tagger, as a user would write one: its module is all a new tagger needs (plus one registration)."""

from dataclasses import dataclass

import pyarrow as pa

from pipelines.contract import Check, CheckResult, param
from pipelines.curation.tagger import Rejection, Tagger


@dataclass(frozen=True)
class ToyFilterConfig:
    max_digits: int = param(10_000, "documents with more digits than this are dropped")


def _tag(texts, cfg):
    counts = [sum(c.isdigit() for c in t) for t in texts]
    return {"digit_count": pa.array(counts, pa.int32())}, {"digits_total": sum(counts)}


def _reject(row, cfg):
    return Rejection("toy", "toy:too_many_digits", row["digit_count"]) if row["digit_count"] > cfg.max_digits else None


def _counts_are_not_negative(lake, manifest) -> CheckResult:
    return CheckResult(manifest["digits_total"] >= 0, {"digits_total": manifest["digits_total"]})


TOY = Tagger(name="toy_digits", description="Digits per document (a test tagger).",
             attributes=pa.schema([("digit_count", pa.int32())]), tag=_tag, filter_config=ToyFilterConfig, reject=_reject,
             carry=(pa.field("digit_count", pa.int32()),),
             checks=(Check("digit_counts_valid", "Digit counts are not negative.", _counts_are_not_negative),))
