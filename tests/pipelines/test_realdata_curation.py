"""PII detection on Presidio's synthetic sentences (dev half in $REALDATA_DIR/pii); skipped when absent."""

import json

import pytest

from benchmarks.curation_quality import PRESIDIO_TYPES
from pipelines.curation.pii import find_pii
from pipelines.settings import setting_path

PII_DIR = setting_path("REALDATA_DIR") / "pii"
pytestmark = pytest.mark.skipif(not PII_DIR.is_dir(), reason=f"no labeled PII data in {PII_DIR} (set REALDATA_DIR)")


def test_pii_recall_per_type_and_no_false_positives():
    data = json.loads(next(PII_DIR.glob("*.json")).read_text())
    total, hit, false_positives = {}, {}, 0
    for ex in data:
        spans = find_pii(ex["full_text"])
        gold = [(g["start_position"], g["end_position"], PRESIDIO_TYPES.get(g["entity_type"])) for g in ex["spans"]]
        for start, end, kind in gold:
            if kind:
                total[kind] = total.get(kind, 0) + 1
                hit[kind] = hit.get(kind, 0) + any(s.type == kind and s.start < end and s.end > start for s in spans)
        false_positives += sum(not any(k == s.type and s.start < e and s.end > b for b, e, k in gold) for s in spans)
    recall = {k: hit[k] / total[k] for k in total}
    assert recall["phone"] >= 0.90, recall
    assert all(recall[k] >= 0.97 for k in ("email", "ip", "credit_card", "ssn", "iban")), recall
    assert false_positives <= 2
