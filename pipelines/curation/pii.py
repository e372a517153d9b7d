"""PII detection and redaction: emails, phones, public IPv4/IPv6, Luhn-valid cards, US SSNs, IBANs.

Each detector is a regex plus a validator (Luhn, mod-97, public address, plausible
SSN areas) plus context guards against look-alikes: ISBN/DOI/version numbers,
private/reserved IPs, dates. Spans are found in priority order and never overlap.
Detection (spans + counts) is kept apart from redaction so the filter stage can
re-decide without re-scanning.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

PII_TYPES = ("email", "phone", "ip", "credit_card", "ssn", "iban")
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP_ADDRESS>", "credit_card": "<CREDIT_CARD>",
                "ssn": "<SSN>", "iban": "<IBAN>"}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")  # validated by ipaddress
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.]*\d)")
_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,6}(?![\w.]*\d)|"  # international
                    r"(?<![\w+])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w.]*\d)")  # North American
_VERSION_CONTEXT = re.compile(r"(?:version|firmware|release|build|ver\.?|v|kernel|update)\s*$", re.IGNORECASE)
_NUMBER_CONTEXT = re.compile(r"isbn|doi|issn|order|invoice|tracking|reference|ref\.|serial|#", re.IGNORECASE)
_PAYMENT_CONTEXT = re.compile(r"card|visa|master|amex|credit|debit|payment", re.IGNORECASE)
_DOTTED_QUAD = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_DATE_LIKE = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$")
_IBAN_LENGTHS = {"AT": 20, "BE": 16, "CH": 21, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "IE": 22,
                 "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str


def luhn_sum(digits: str) -> int:
    """Luhn sum: every second digit from the right doubled (minus 9 when above 9)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total


def luhn_ok(digits: str) -> bool:
    return luhn_sum(digits) % 10 == 0


def luhn_check_digit(payload: str) -> str:
    return str((10 - luhn_sum(payload + "0") % 10) % 10)


def _card_ok(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
        return False
    # issuer prefixes: Visa, Mastercard, Amex, Discover, JCB, Diners
    return bool(re.match(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5)|35|3(?:0[0-5]|[68])", digits))


def _iban_ok(raw: str) -> bool:
    s = raw.replace(" ", "")
    expected = _IBAN_LENGTHS.get(s[:2])
    if (expected and len(s) != expected) or not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _public_ip(raw: str) -> bool:
    try:
        return ipaddress.ip_address(raw).is_global
    except ValueError:
        return False


def _phone_ok(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    return 10 <= len(digits) <= 15 and not _DATE_LIKE.match(raw) and not _DOTTED_QUAD.match(raw)


_DETECTORS = (  # priority order: earlier wins an overlap
    ("email", _EMAIL, None),
    ("iban", _IBAN, _iban_ok),
    ("credit_card", _CARD, _card_ok),
    ("ssn", _SSN, None),
    ("ip", _IPV6, _public_ip),
    ("ip", _IPV4, _public_ip),
    ("phone", _PHONE, _phone_ok),
)


def find_pii(text: str) -> list[Span]:
    """Non-overlapping PII spans, sorted by start."""
    taken: list[Span] = []
    for kind, pattern, valid in _DETECTORS:
        for m in pattern.finditer(text):
            start, end = m.span()
            raw = m.group(0)
            if kind == "phone":  # a phone number inside parentheses: drop the unbalanced one
                if raw.endswith(")") and raw.count(")") > raw.count("("):
                    raw, end = raw[:-1], end - 1
                if raw.startswith("(") and raw.count("(") > raw.count(")"):
                    raw, start = raw[1:], start + 1
            if valid is not None and not valid(raw):
                continue
            before = text[max(0, start - 24):start]
            if kind in ("ip", "phone") and _VERSION_CONTEXT.search(before):
                continue
            if kind in ("phone", "credit_card") and _NUMBER_CONTEXT.search(before) and not _PAYMENT_CONTEXT.search(before):
                continue
            if any(s.start < end and start < s.end for s in taken):
                continue
            taken.append(Span(start, end, kind))
    return sorted(taken, key=lambda s: s.start)


def count_by_type(spans: list[Span]) -> dict[str, int]:
    counts = dict.fromkeys(PII_TYPES, 0)
    for s in spans:
        counts[s.type] += 1
    return counts


def redact(text: str, spans: list[Span]) -> str:
    """Replace each span with its typed placeholder."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s.start):
        out.append(text[pos:s.start])
        out.append(PLACEHOLDERS[s.type])
        pos = s.end
    out.append(text[pos:])
    return "".join(out)
