"""A labeled PII test set (seeded) and its scoring: recall per type, false-positive rate.

Positives embed one PII value, in one of several real-world formats, in a sentence;
negatives are sentences with look-alikes a naive regex would flag: ISBNs, DOIs,
version strings, private/reserved IPs, dates, order numbers, prices, non-Luhn
16-digit numbers, invalid IBANs, SSN-shaped numbers in impossible ranges.
"""

from __future__ import annotations

import random
from collections import Counter

from pipelines.curation.pii import find_pii
from pipelines.sample.crawl import luhn_complete

_POS_TEMPLATES = [
    "Please contact {v} if you have any questions.", "My details: {v}.", "You can reach the office at {v} during the week.",
    "{v} was listed in the leaked file.", "Reply to ({v}) before Friday.",
]
_NEG_SENTENCES = [
    "The second edition has ISBN 978-0-306-40615-{d}.", "See doi:10.1038/nphys{n4} for details.",
    "Upgrade to version {a}.{b}.{c}.{d} before the release.", "The NAS at 192.168.{a}.{b} is offline.",
    "Our VPN gateway is 10.{a}.{b}.{c} inside the office.", "Meeting on 2024-0{d}-1{d} at 10:30.",
    "Order #{n4}-{n4}-{n4} shipped yesterday.", "The total was $1,{n3}.{a}{b} including tax.",
    "Invoice number 4{n4}{n4}{n4}{n3} is overdue.", "Account XX12 3456 7890 1234 5678 90 is not real.",
    "The code 000-12-3456 is a test value.", "Localhost is 127.0.0.1 and the docs use 203.0.113.{a}.",
    "The population grew from 1,{n3},{n3} to 2,{n3},{n3}.", "Call extension {n3} for the front desk.",
    "Firmware build 4.19.{a}.{b} fixed the bug.", "Coordinates 48.8566, 2.3522 mark the city centre.",
]


def _value(kind: str, rng: random.Random) -> str:
    if kind == "email":
        user = rng.choice(["anna.meier", "j_smith", "contact", "info+news", "m.dubois77"])
        return f"{user}@{rng.choice(['example.com', 'mail.example.org', 'uni-koeln.example.de', 'company.co.uk'])}"
    if kind == "phone":
        a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
        return rng.choice([f"+1 ({a}) {b}-{c}", f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+44 20 {b}{a % 10} {c}",
                           f"+49 30 {b} {c}{a % 10}", f"+33 1 {a % 90 + 10} {b % 90 + 10} {c % 90 + 10} {a % 89 + 10}", f"{a}.{b}.{c}"])
    if kind == "ip":
        if rng.random() < 0.3:
            return f"2001:4860:{rng.randint(4096, 65535):x}::{rng.randint(1, 65535):x}"
        return f"{rng.choice([8, 23, 45, 81, 104, 151, 172])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}".replace("172.", "173.")
    if kind == "credit_card":
        prefix = rng.choice(["4", "51", "55", "37", "6011"])
        digits = luhn_complete(prefix, 15 if prefix == "37" else 16, rng)
        if prefix == "37":
            return rng.choice([digits, f"{digits[:4]} {digits[4:10]} {digits[10:]}"])
        return rng.choice([digits, " ".join(digits[i:i + 4] for i in range(0, 16, 4)), "-".join(digits[i:i + 4] for i in range(0, 16, 4))])
    if kind == "ssn":
        return f"{rng.choice([rng.randint(1, 665), rng.randint(667, 899)]):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    if kind == "iban":
        return rng.choice(["DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32", "FR14 2004 1010 0505 0001 3M02 606",
                           "NL91ABNA0417164300", "ES91 2100 0418 4502 0005 1332", "CH93 0076 2011 6238 5295 7"])
    raise ValueError(kind)


def labeled_set(n_per_type: int = 100, n_negative: int = 400, seed: int = 0) -> list[tuple[str, str | None, str | None]]:
    """(sentence, pii type or None, planted value or None)."""
    rng = random.Random(seed)
    out = []
    for kind in ("email", "phone", "ip", "credit_card", "ssn", "iban"):
        for _ in range(n_per_type):
            v = _value(kind, rng)
            out.append((rng.choice(_POS_TEMPLATES).format(v=v), kind, v))
    for _ in range(n_negative):
        s = rng.choice(_NEG_SENTENCES).format(a=rng.randint(0, 255), b=rng.randint(0, 255), c=rng.randint(0, 99), d=rng.randint(1, 9),
                                              n3=rng.randint(100, 999), n4=rng.randint(1000, 9999))
        out.append((s, None, None))
    return out


def evaluate(examples=None) -> dict:
    """Recall per type (the planted value found with the right type) and false-positive rate."""
    examples = examples or labeled_set()
    hits, totals, fp_sentences, negatives = Counter(), Counter(), 0, 0
    for text, kind, value in examples:
        spans = find_pii(text)
        if kind is None:
            negatives += 1
            fp_sentences += bool(spans)
            continue
        totals[kind] += 1
        hits[kind] += any(s.type == kind and text[s.start:s.end] == value for s in spans)
    recall = {k: hits[k] / totals[k] for k in totals}
    return {"recall": recall, "macro_recall": sum(recall.values()) / len(recall),
            "false_positive_rate": fp_sentences / max(negatives, 1), "positives": sum(totals.values()), "negatives": negatives}
