"""Payload decoding and HTML -> main-text extraction.

resiliparse with boilerplate pruning is the default extractor: on real news/blog pages it
matches trafilatura's bag-of-words F1 at several times its speed (benchmarks/ingest_bench.py,
README "Benchmarks"). trafilatura stays selectable per run.
"""

from __future__ import annotations

import codecs
import re

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import detect_encoding
from resiliparse.parse.html import HTMLTree

EXTRACTORS = ("resiliparse", "trafilatura")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# C0 controls other than tab/newline/CR, C1 controls, and U+FFFD: signs of binary or mis-decoded bytes.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


class UndecodableError(ValueError):
    """No candidate encoding decodes the payload strictly."""


class BinaryContentError(ValueError):
    """The payload decodes, but mostly to control characters: it is not text."""


def _normalize_charset(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'").lower()).name
    except LookupError:
        return None


def decode_payload(body: bytes, declared: str | None = None, max_control_ratio: float = 0.05) -> tuple[str, str]:
    """Decode bytes to text; returns (text, encoding used).

    Order: BOM, the HTTP-declared charset, an HTML <meta> charset, then uchardet's
    guess, then UTF-8 and Windows-1252. Each is tried strictly; the first that works
    wins. Declarations are often wrong on the web, so a failed one is not fatal.
    """
    candidates: list[str] = []
    for bom, enc in _BOMS:
        if body.startswith(bom):
            candidates.append(enc)
            body = body[len(bom):]
            break
    candidates.append(_normalize_charset(declared))
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        candidates.append(_normalize_charset(meta.group(1).decode("ascii", "ignore")))
    candidates += [_normalize_charset(detect_encoding(body)), "utf-8", "cp1252"]
    seen: set[str] = set()
    binary_under: list[str] = []
    for enc in candidates:
        if not enc or enc in seen:
            continue
        seen.add(enc)
        try:
            text = body.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
        if text and len(_CONTROL.findall(text)) > max_control_ratio * len(text):
            binary_under.append(enc)
            continue
        return text, enc
    if binary_under:
        raise BinaryContentError(f"over {max_control_ratio:.0%} control characters when decoded as {binary_under}")
    raise UndecodableError(f"none of {sorted(seen)} decodes the payload")


# resiliparse's main-content mode drops a text node that is only a dash or bullet (it reads it as a list
# bullet), so `<span>1979</span>–<span>1983</span>` became "19791983": wrong data, not just lost data.
# A word joiner keeps such a node (it is not a bare separator any more) and is removed afterwards.
_SEPARATOR_NODE = re.compile(r">(\s*)(–|—|•|&ndash;|&mdash;|&bull;|&#821[12];|&#8226;)(\s*)<")
_WORD_JOINER = "\u2060"

# Boilerplate pruning before main-content extraction (the Readability / trafilatura approach: class and
# id names that say "not the article"). resiliparse's own heuristics keep headlines, bylines, captions
# and newsletter boxes; on real news pages those cost about 0.05 precision. Comment sections stay: on a
# forum page they are the document. Words match case-insensitive substrings of class or id; an element
# is never skipped when its name also says it holds the content or when it contains three sibling
# paragraphs, so a wrapper such as "content-with-sidebar" or an article inside a "widget" keeps its text.
_BOILERPLATE_WORDS = (
    "caption", "credit", "photo", "byline", "author", "dateline", "timestamp", "date", "meta",
    "share", "social", "newsletter", "subscri", "signup", "cookie", "consent", "gdpr", "popup", "modal",
    "breadcrumb", "related", "recommend", "promo", "advert", "sponsor", "tags", "toolbar", "pagination",
    "widget", "sidebar", "copyright",
)
_CONTENT_HINTS = ("article", "body", "content", "main", "post", "story", "entry", "text")
_KEEPS_BODY = "".join(f":not([class*={w} i]):not([id*={w} i])" for w in _CONTENT_HINTS) + ":not(:has(p ~ p ~ p))"
# The headline is the document's title (stored in its own column), not body text; figures and article
# headers hold captions, credits, decks and bylines.
_NAMED_BOILERPLATE = ", ".join(f"[{attr}*={word} i]" for word in _BOILERPLATE_WORDS for attr in ("class", "id"))
_SKIP_SELECTORS = [f"{tag}:not(:has(p ~ p ~ p))" for tag in ("h1", "header", "figure", "figcaption")] + [
    f":is({_NAMED_BOILERPLATE}){_KEEPS_BODY}"]


def extract_main_text(html: str, extractor: str = "resiliparse") -> tuple[str | None, str]:
    """Return (title, main text) with paragraphs separated by newlines."""
    if extractor == "resiliparse":
        tree = HTMLTree.parse(_SEPARATOR_NODE.sub(lambda m: f">{m[1]}{m[2]}{_WORD_JOINER}{m[3]}<", html))
        title = tree.title.strip() if tree.title else None
        text = extract_plain_text(tree, main_content=True, preserve_formatting=True, alt_texts=False,
                                  list_bullets=False, post_meta=False,
                                  skip_elements=_SKIP_SELECTORS).replace(_WORD_JOINER, "")
    elif extractor == "trafilatura":
        import trafilatura

        text = trafilatura.extract(html, include_comments=True, include_tables=True, deduplicate=False) or ""
        title = HTMLTree.parse(html).title or None
    else:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {EXTRACTORS}")
    return title, normalize_whitespace(text)


def normalize_whitespace(text: str) -> str:
    """Strip each line, collapse runs of blank lines to one newline."""
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)
