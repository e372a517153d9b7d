"""Deterministic sample web crawl: gzip/plain WARC files plus a WET file, CC-shaped.

The crawl plants everything the curation stages must handle: several languages,
boilerplate around main content, exact and near duplicates across files, PII,
abusive and spammy pages, non-UTF-8 encodings, non-HTML and error responses, and
one corrupt gzip member. A ground-truth JSONL (outside the crawl directory) records
what was planted in each record so tests and benchmarks can score the stages.
"""

from __future__ import annotations

import html
import json
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipelines.curation.pii import luhn_check_digit
from pipelines.sample import lexicon
from pipelines.sample.text import MAIN_LANGS, OTHER_LANGS, TOPICS, TextGenerator
from pipelines.sample.warc_writer import WarcFileWriter, http_request, http_response, sha1_digest

CRAWL_NAME = "CC-MAIN-SAMPLE-2024-10"
DOMAINS = {
    "en": ["dailyharbor.example.com", "brightvale-news.example.org", "northside.example.net"],
    "de": ["stadtkurier.example.de", "nachrichten-am-see.example.de"],
    "fr": ["journal-du-val.example.fr", "lactu-locale.example.fr"],
    "es": ["diario-del-sur.example.es", "noticias-plaza.example.com"],
    "it": ["gazzetta-locale.example.it"], "pt": ["jornal-da-praca.example.pt"],
    "nl": ["stadsblad.example.nl"], "ru": ["gorod-novosti.example.ru"], "ja": ["chiiki-news.example.jp"],
}


@dataclass
class PlantedRecord:
    """Ground truth for one planted WARC record."""

    file: str
    url: str
    kind: str  # article | exact_dup | near_dup | pii | toxic | spam | encoding | non_html | http_error | undecodable | corrupt
    lang: str | None = None
    charset: str | None = None
    title: str = ""  # the page's headline (<title> and <h1>); extraction keeps it apart from the body
    main_text: str = ""  # the body an extractor should return: paragraphs, one per line
    dup_of: str | None = None
    pii: list[dict] = field(default_factory=list)
    toxic_lines: int = 0


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    digits = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    return digits + luhn_check_digit(digits)


class CrawlBuilder:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.text = TextGenerator(self.rng)
        self.articles: list[PlantedRecord] = []
        self.truth: list[PlantedRecord] = []
        self.url_counter = 0

    # ---- pages -------------------------------------------------------------------
    def url(self, lang: str, slug: str) -> str:
        self.url_counter += 1
        return f"https://{self.rng.choice(DOMAINS[lang])}/{slug}/{self.url_counter:05d}-{self.rng.getrandbits(24):06x}.html"

    def render_page(self, lang: str, title: str, paragraphs: list[str], charset: str = "utf-8",
                    extra_blocks: list[str] | None = None) -> str:
        chrome = lang if lang in lexicon.NAV_ITEMS else "en"
        nav = "".join(f'<li><a href="/{i}">{html.escape(item)}</a></li>' for i, item in enumerate(lexicon.NAV_ITEMS[chrome]))
        cookie, copyright_, links = lexicon.BOILERPLATE[chrome]
        related = "".join(f'<li><a href="/related/{self.rng.getrandbits(20)}">{html.escape(self.text.title(lang, self.rng.choice(TOPICS)))}</a></li>'
                          for _ in range(3))
        body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paragraphs)
        body += "".join(extra_blocks or [])
        layout = self.rng.randint(0, 2)
        if layout == 0:
            main = f'<main><article><h1>{html.escape(title)}</h1>\n{body}</article></main>'
        elif layout == 1:
            main = f'<div id="content" class="post"><h1>{html.escape(title)}</h1>\n<div class="entry-content">{body}</div></div>'
        else:
            main = f'<div class="container"><section class="story"><h1>{html.escape(title)}</h1>\n{body}</section></div>'
        return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="{charset}"><title>{html.escape(title)}</title>'
                f'<script>window.dataLayer=[];function track(){{return 1;}}</script><style>body{{font-family:serif}}</style></head>\n'
                f'<body><header><div class="cookie-banner">{html.escape(cookie)}</div><nav><ul>{nav}</ul></nav></header>\n'
                f'{main}\n<aside class="sidebar"><h3>Related</h3><ul>{related}</ul></aside>\n'
                f'<footer><p>{html.escape(copyright_)}</p><p>{html.escape(links)}</p></footer></body></html>\n')

    def article(self, file: str, lang: str, kind: str = "article") -> tuple[PlantedRecord, str]:
        topic = self.rng.choice(TOPICS)
        title = self.text.title(lang, topic)
        paras = self.text.paragraphs(lang, topic, self.rng.randint(3, 6))
        rec = PlantedRecord(file=file, url=self.url(lang, topic), kind=kind, lang=lang, charset="utf-8",
                            title=title, main_text="\n".join(paras))
        return rec, self.render_page(lang, title, paras)

    def near_duplicate(self, file: str, src: PlantedRecord) -> tuple[PlantedRecord, str]:
        """Same article syndicated elsewhere: two place names swapped, as a re-publisher's edit."""
        title, paras = src.title, src.main_text.split("\n")
        places = lexicon.PLACES[src.lang]
        for _ in range(2):
            i = self.rng.randrange(len(paras))
            present = [p for p in places if p in paras[i]]
            if present:
                old = self.rng.choice(present)
                paras[i] = paras[i].replace(old, self.rng.choice([p for p in places if p != old]), 1)
            else:
                paras[i] = paras[i] + " " + self.text.sentence(src.lang, self.rng.choice(TOPICS))
        rec = PlantedRecord(file=file, url=self.url(src.lang, "syndicated"), kind="near_dup", lang=src.lang,
                            charset="utf-8", title=title, main_text="\n".join(paras), dup_of=src.url)
        return rec, self.render_page(src.lang, title, paras)

    def pii_page(self, file: str) -> tuple[PlantedRecord, str]:
        rng = self.rng
        rec, _ = self.article(file, "en", kind="pii")
        title, paras = rec.title, rec.main_text.split("\n")
        person = rng.choice(lexicon.PERSONS["en"])
        email = f"{person.split()[0].lower()}.{person.split()[1].lower()}{rng.randint(1, 99)}@mail-{rng.randint(1, 9)}.example.com"
        phone = f"+1 ({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
        ip = f"{rng.choice([23, 45, 81, 104, 151, 203])}.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
        prefix = rng.choice(["4", "51", "37"])
        card = luhn_complete(prefix, 15 if prefix == "37" else 16, rng)
        card_fmt = f"{card[:4]} {card[4:10]} {card[10:]}" if prefix == "37" else " ".join(card[i:i + 4] for i in range(0, 16, 4))
        ssn = f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
        iban = "DE89 3704 0044 0532 0130 00"
        contact = [
            f"For questions, contact {person} at {email} or call {phone}.",
            f"The registration server runs at {ip} and the payment was made with card {card_fmt}.",
            f"Her social security number {ssn} was printed on the form by mistake, together with the account {iban}.",
            # Look-alikes that must not be redacted.
            "The book has ISBN 978-3-16-148410-0, see doi 10.1000/182, and the router at 192.168.1.1 runs firmware 10.2.3.4.",
        ]
        paras = paras + contact
        rec.main_text = "\n".join(paras)
        rec.pii = [{"type": "email", "value": email}, {"type": "phone", "value": phone}, {"type": "ip", "value": ip},
                   {"type": "credit_card", "value": card_fmt}, {"type": "ssn", "value": ssn}, {"type": "iban", "value": iban}]
        return rec, self.render_page("en", title, paras)

    def toxic_page(self, file: str, whole: bool) -> tuple[PlantedRecord, str]:
        rng = self.rng
        topic = rng.choice(TOPICS)
        title = self.text.title("en", topic)
        if whole:
            lines = rng.sample(lexicon.TOXIC_LINES, 6)  # a thread of Gopher length (>= 50 words)
        else:
            lines = self.text.paragraphs("en", topic, 3) + [rng.choice(lexicon.TOXIC_LINES)]
        comments = "".join(f'<div class="comment"><p>{html.escape(line)}</p></div>' for line in lines)
        rec = PlantedRecord(file=file, url=self.url("en", "forum"), kind="toxic", lang="en", charset="utf-8",
                            title=title, main_text="\n".join(lines), toxic_lines=len(lines) if whole else 1)
        return rec, self.render_page("en", title, [], extra_blocks=[f'<section class="comments">{comments}</section>'])

    def spam_page(self, file: str) -> tuple[PlantedRecord, str]:
        rng = self.rng
        style = rng.randint(0, 2)
        if style == 0:  # keyword stuffing
            lines = [" ".join(rng.choices(lexicon.SPAM_PHRASES, k=6)) for _ in range(12)]
        elif style == 1:  # repeated line
            lines = [rng.choice(lexicon.SPAM_PHRASES) + "!!!"] * 20
        else:  # link farm
            lines = [f"{p} >> http://spam-{rng.getrandbits(16)}.example.biz" for p in rng.choices(lexicon.SPAM_PHRASES, k=15)]
        title = rng.choice(lexicon.SPAM_PHRASES).upper()
        rec = PlantedRecord(file=file, url=f"http://spam-{rng.getrandbits(24):06x}.example.biz/offer", kind="spam",
                            lang="en", charset="utf-8", title=title, main_text="\n".join(lines))
        page = "<html><head><title>{}</title></head><body>{}</body></html>".format(
            html.escape(title), "".join(f"<p>{html.escape(x)}</p>" for x in lines))
        return rec, page


def _encoded_pages(b: CrawlBuilder, file: str) -> list[tuple[PlantedRecord, bytes, str]]:
    """Pages in legacy encodings: declared in HTTP, only in <meta>, or not at all."""
    out = []
    for lang, charset, declare in (("de", "windows-1252", "http"), ("fr", "iso-8859-1", "meta"),
                                   ("ru", "windows-1251", "http"), ("ja", "shift_jis", "meta"), ("es", "windows-1252", "none")):
        topic = b.rng.choice(TOPICS)
        title = b.text.title(lang, topic)
        paras = b.text.paragraphs(lang, topic, 4)
        page = b.render_page(lang, title, paras, charset=charset if declare == "meta" else "")
        if declare != "meta":
            page = page.replace('<meta charset="">', "")
        ctype = f"text/html; charset={charset}" if declare == "http" else "text/html"
        rec = PlantedRecord(file=file, url=b.url(lang, "archiv"), kind="encoding", lang=lang, charset=charset,
                            title=title, main_text="\n".join(paras))
        out.append((rec, page.encode(charset), ctype))
    return out


def generate_crawl(out_dir: Path, truth_path: Path, seed: int = 0, n_files: int = 3, pages_per_file: int = 120) -> list[PlantedRecord]:
    """Write `n_files` WARC files (the last one uncompressed) and one WET file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    b = CrawlBuilder(seed)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    wet_candidates: list[tuple[PlantedRecord, str, str]] = []
    for f in range(n_files):
        compress = f < n_files - 1 or n_files == 1
        name = f"{CRAWL_NAME}-{f:05d}.warc" + (".gz" if compress else "")
        w = WarcFileWriter(out_dir / name, compress=compress, rng_uuid=lambda: b.rng.getrandbits(128))
        info = (f"isPartOf: {CRAWL_NAME}\r\npublisher: LLM Foundry sample generator\r\nformat: WARC File Format 1.0\r\n"
                f"conformsTo: https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/\r\n"
                f"robots: checked via crawler-commons\r\noperator: sample@llm-foundry.example\r\n").encode()
        w.write("warcinfo", info, {"WARC-Date": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "WARC-Filename": name,
                                   "Content-Type": "application/warc-fields"})
        clock = start + timedelta(days=f)
        pages: list[tuple[PlantedRecord, bytes, str]] = []
        for _ in range(pages_per_file):
            roll = b.rng.random()
            if roll < 0.07 and b.articles:
                src = b.rng.choice(b.articles)
                rec = PlantedRecord(file=name, url=b.url(src.lang, "mirror"), kind="exact_dup", lang=src.lang,
                                    charset="utf-8", title=src.title, main_text=src.main_text, dup_of=src.url)
                title, paras = src.title, src.main_text.split("\n")
                page = b.render_page(src.lang, title, paras)
            elif roll < 0.14 and b.articles:
                rec, page = b.near_duplicate(name, b.rng.choice(b.articles))
            elif roll < 0.19:
                rec, page = b.pii_page(name)
            elif roll < 0.23:
                rec, page = b.toxic_page(name, whole=b.rng.random() < 0.5)
            elif roll < 0.28:
                rec, page = b.spam_page(name)
            else:
                r = b.rng.random()
                lang = "en" if r < 0.45 else MAIN_LANGS[1 + int((r - 0.45) / 0.15)] if r < 0.9 else b.rng.choice(OTHER_LANGS)
                rec, page = b.article(name, lang)
                b.articles.append(rec)
            pages.append((rec, page.encode("utf-8"), "text/html; charset=UTF-8"))
        # every file carries at least one of each planted case, whatever the dice said
        guaranteed = [b.pii_page(name), b.toxic_page(name, whole=True), b.toxic_page(name, whole=False), b.spam_page(name)]
        if b.articles:
            guaranteed.append(b.near_duplicate(name, b.rng.choice(b.articles)))
        pages += [(rec, page.encode("utf-8"), "text/html; charset=UTF-8") for rec, page in guaranteed]
        pages += _encoded_pages(b, name)
        b.rng.shuffle(pages)
        # Records that ingest must skip with a reason.
        specials = [
            ("non_html", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "application/pdf", "200 OK"),
            ("non_html", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(b.rng.getrandbits(8) for _ in range(64)), "image/jpeg", "200 OK"),
            ("http_error", b"<html><body><h1>404 Not Found</h1></body></html>", "text/html", "404 Not Found"),
            ("http_error", b"", "text/html", "301 Moved Permanently"),
            ("undecodable", bytes([0x81, 0x8d, 0x8f, 0x90, 0x9d]) * 40 + bytes(b.rng.getrandbits(8) for _ in range(300)), "text/html", "200 OK"),
        ]
        for kind, body, ctype, status in specials:
            pages.insert(b.rng.randrange(len(pages)), (PlantedRecord(file=name, url=b.url("en", kind), kind=kind), body, ctype + "\x00" + status))
        corrupt_index = b.rng.randrange(5, len(pages)) if compress and f == 0 else None
        for i, (rec, body, ctype) in enumerate(pages):
            ctype, _, status = ctype.partition("\x00")
            clock += timedelta(seconds=b.rng.randint(1, 90))
            date = clock.strftime("%Y-%m-%dT%H:%M:%SZ")
            req_id, _ = w.write("request", http_request(rec.url), {"WARC-Date": date, "WARC-Target-URI": rec.url,
                                                                  "Content-Type": "application/http; msgtype=request"})
            extra = {"Location": rec.url + "?moved=1"} if status.startswith("301") else None
            block = http_response(body, ctype, status or "200 OK", extra)
            resp_id, offset = w.write("response", block, {
                "WARC-Date": date, "WARC-Target-URI": rec.url, "WARC-Concurrent-To": req_id,
                "WARC-IP-Address": f"93.184.{b.rng.randint(0, 255)}.{b.rng.randint(1, 254)}",
                "WARC-Payload-Digest": sha1_digest(body), "Content-Type": "application/http; msgtype=response",
                "WARC-Identified-Payload-Type": ctype.split(";")[0]})
            w.write("metadata", f"fetchTimeMs: {b.rng.randint(40, 900)}\r\ncharset-detected: {rec.charset or 'unknown'}\r\n".encode(),
                    {"WARC-Date": date, "WARC-Target-URI": rec.url, "WARC-Concurrent-To": resp_id,
                     "Content-Type": "application/warc-fields"})
            if i == corrupt_index:
                rec.kind = "corrupt"
                _corrupt_member(w, offset)
            b.truth.append(rec)
            if rec.kind in ("article", "pii") and b.rng.random() < 0.3:
                wet_candidates.append((rec, date, resp_id))
        w.close()
    _write_wet(out_dir / f"{CRAWL_NAME}-00000.warc.wet.gz", wet_candidates, b)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    with truth_path.open("w", encoding="utf-8") as fh:
        for rec in b.truth:
            fh.write(json.dumps(asdict(rec), ensure_ascii=False) + "\n")
    return b.truth


def _corrupt_member(w: WarcFileWriter, offset: int) -> None:
    """Flip bytes inside the deflate stream of the gzip member starting at `offset`."""
    buf = w._buf.getbuffer()
    for pos in range(offset + 30, offset + 60):
        buf[pos] ^= 0x5A
    del buf


def _write_wet(path: Path, pages: list[tuple[PlantedRecord, str, str]], b: CrawlBuilder) -> None:
    """WET = extracted plain text as `conversion` records, as Common Crawl publishes it."""
    w = WarcFileWriter(path, compress=True, rng_uuid=lambda: b.rng.getrandbits(128))
    w.write("warcinfo", f"isPartOf: {CRAWL_NAME}\r\npublisher: LLM Foundry sample generator\r\n".encode(),
            {"WARC-Date": "2024-03-05T00:00:00Z", "WARC-Filename": path.name, "Content-Type": "application/warc-fields"})
    for rec, date, response_id in pages:
        block = f"{rec.title}\n{rec.main_text}".encode()  # WET text starts with the page title
        w.write("conversion", block, {"WARC-Target-URI": rec.url, "WARC-Date": date,
                                      "WARC-Refers-To": response_id, "Content-Type": "text/plain",
                                      "WARC-Identified-Content-Language": {"en": "eng", "de": "deu", "fr": "fra", "es": "spa"}.get(rec.lang, "und")})
    w.close()
