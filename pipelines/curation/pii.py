"""PII detection and redaction: emails, phones, public IPv4/IPv6, Luhn-valid cards, US SSNs, IBANs.

Each detector is a regex plus a validator (Luhn with issuer ranges, mod-97, public address,
plausible SSN areas, Google's libphonenumber via `phonenumbers`) plus context guards against
look-alikes: ISBN/DOI/version and section numbers, private/reserved IPs, dates, years.
Spans are found in priority order and never overlap. Detection (spans + counts) is kept
apart from redaction so the filter stage can re-decide without re-scanning.

Phones: a digit run with phone-style separators is a candidate; it is a phone when
libphonenumber finds it a possible number (in its own country code if it has one, else in
one of `PHONE_REGIONS`) and either its form is unmistakable (international `+`, a trunk `0`
or area code in parentheses, NANP `xxx-xxx-xxxx`, four or more digit pairs) or a phone word
stands just before it ("Phone:", "call me at", "Fax", "Tel.", ...). Year ranges, dates and
plain long numbers without a phone word are not phones.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

PII_TYPES = ("email", "phone", "ip", "credit_card", "ssn", "iban")
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP_ADDRESS>", "credit_card": "<CREDIT_CARD>",
                "ssn": "<SSN>", "iban": "<IBAN>"}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_IBAN = re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){11,18}\d(?![\d-])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")  # validated by ipaddress
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.]*\d)")
_PHONE = re.compile(r"(?<![\w+.,/-])(?:\+ ?)?(?:\(\+?\d{1,5}\) ?)?\d[\d \t().-]{4,22}\d"
                    r"(?: ?(?:x|ext\.?|extension) ?\d{1,5})?(?![\w.,/-]*\d)", re.IGNORECASE)
_PHONE_WORDS = re.compile(r"(?:phone|tel|telephone|mobile|cell|fax|desk|office|call|calling|ring|reach|text|sms|whatsapp|"
                          r"contact|number|answering|message|telefon|handy|t[ée]l[ée]phone|tel[ée]fono|telefone|móvil|"
                          r"portable|celular|tlf|puhelin|telefoon)\b[^\n\d]{0,24}$", re.IGNORECASE)
_PHONE_FORM = re.compile(r"^\+|^\(|^0\d{1,4}[ ./-]\d|^(?:1[-. ])?\d{3}[-.]\d{3}[-.]\d{4}|^\d{2}(?:[ .-]\d{2}){3,}$")
_NOT_PHONE = re.compile(r"^\d{1,2}[.:]\d{2}(?:\s*[-–]?\s*\d{1,2}[.:]\d{2})+$"  # opening hours, prices: 09.00 - 15.00
                        r"|^(?:[01]\d|2[0-3])[0-5]\d\s*[-–]\s*(?:[01]\d|2[0-3])[0-5]\d$"  # 0900-1530
                        r"|\.\s")  # dates written with spaces: 08. 09. 2013
_YEARS = re.compile(r"^(1[89]\d\d|20\d\d)\s*[-–/ ]\s*(1[89]\d\d|20\d\d)$")
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|extension)\s?\d", re.IGNORECASE)
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "SE", "NO", "DK", "FI", "PL", "PT", "IE",
                 "BR", "MX", "AR", "AU", "NZ", "IN", "JP", "CA", "ZA", "HU", "CZ", "GR", "TR", "RU", "CY", "EE")
_VERSION_CONTEXT = re.compile(r"(?:version|firmware|release|build|ver\.?|v|kernel|update)\s*$", re.IGNORECASE)
_NUMBER_CONTEXT = re.compile(r"isbn|doi|issn|order|invoice|tracking|reference|ref\.|serial|licen[cs]e|passport|#", re.IGNORECASE)
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


# issuer ranges (IIN prefix, card lengths): Visa, Mastercard, Amex, Discover, JCB (incl. 15-digit 1800/2131),
# Diners, Maestro (12-19 digits), UnionPay
_ISSUERS = ((r"4", (13, 16, 19)), (r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)", (16,)), (r"3[47]", (15,)),
            (r"6(?:011|4[4-9]|5)", (16, 19)), (r"35", (16, 17, 18, 19)), (r"1800|2131", (15,)),
            (r"3(?:0[0-5]|[68]|9)", (14, 16, 19)), (r"5[06-9]|6\d", tuple(range(12, 20))), (r"62", tuple(range(16, 20))))


def _card_ok(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    if not 12 <= len(digits) <= 19 or not luhn_ok(digits):
        return False
    return any(re.match(prefix, digits) and len(digits) in lengths for prefix, lengths in _ISSUERS)


def _iban_ok(raw: str) -> bool:
    s = raw.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(s[:2])
    if (expected and len(s) != expected) or not 15 <= len(s) <= 34 or not s[:2].isalpha():
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_span(raw: str) -> str | None:
    """The longest prefix of `raw` (whole groups) that is a valid IBAN: "BE68539007547034 EUR" -> "BE68539007547034"."""
    parts = raw.split(" ")
    for n in range(len(parts), 0, -1):
        candidate = " ".join(parts[:n])
        if _iban_ok(candidate):
            return candidate
    return None


def _public_ip(raw: str) -> bool:
    try:
        return ipaddress.ip_address(raw).is_global
    except ValueError:
        return False


def _possible_phone(raw: str) -> bool:
    """libphonenumber: a possible number in its own country code (+...) or in one of PHONE_REGIONS."""
    import phonenumbers

    number = _EXTENSION.split(raw)[0]
    regions = (None,) if number.lstrip("(").startswith("+") else PHONE_REGIONS
    for region in regions:
        try:
            if phonenumbers.is_possible_number(phonenumbers.parse(number, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


def _phone_ok(raw: str, before: str) -> bool:
    digits = re.sub(r"\D", "", _EXTENSION.split(raw)[0])
    if (not 7 <= len(digits) <= 15 or _DATE_LIKE.match(raw) or _DOTTED_QUAD.match(raw) or _YEARS.match(raw.strip())
            or _NOT_PHONE.search(raw.strip())):
        return False
    if not (_PHONE_FORM.search(raw) or _PHONE_WORDS.search(before)):
        return False
    return _possible_phone(raw)


_DETECTORS = (  # priority order: earlier wins an overlap
    ("email", _EMAIL, None),
    ("iban", _IBAN, _iban_ok),
    ("credit_card", _CARD, _card_ok),
    ("ssn", _SSN, None),
    ("ip", _IPV6, _public_ip),
    ("ip", _IPV4, _public_ip),
    ("phone", _PHONE, None),  # validated with its context in find_pii
)


_IP_WORDS = re.compile(r"\b(?:ip|address|addr|server|host|dns|gateway|router|ping|proxy)\b", re.IGNORECASE)


def _section_number(raw: str, before: str) -> bool:
    """1.2.1.9 in running text is a section or version number unless the text speaks of addresses."""
    parts = raw.split(".")
    return len(parts) == 4 and all(len(p) == 1 for p in parts) and not _IP_WORDS.search(before)


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
            if kind == "iban":
                raw = _iban_span(raw) or ""
                end = start + len(raw)
            if not raw or (valid is not None and not valid(raw)):
                continue
            before = text[max(0, start - 32):start]
            if kind == "phone" and not _phone_ok(raw, before):
                continue
            if kind == "ip" and _section_number(raw, before):
                continue
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
