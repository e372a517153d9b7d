"""WARC/WET -> documents, resilient to corrupt records.

fastwarc does the parsing (gzip or plain, WARC or WET). When it hits a corrupt
gzip member or a malformed record it raises and stops; we then resynchronise at
the next valid record boundary and carry on, so one bad record costs one record,
never the file. Every record ends in exactly one outcome counted in IngestStats.
"""

from __future__ import annotations

import io
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastwarc.warc import ArchiveIterator, WarcRecordType

from pipelines.ingest.html import BinaryContentError, UndecodableError, decode_payload, extract_main_text
from pipelines.ingest.http import HttpResponse, TooLargeError, read_response
from pipelines.ingest.remote import RemoteReader
from pipelines.schema import document_id

WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet", ".warc.wet.gz")
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain",)
_CRAWL_IN_NAME = re.compile(r"CC-MAIN-\d{4}-\d{2}")
_GZIP_MAGIC = b"\x1f\x8b\x08"
_RESYNC_WINDOW = 1 << 16


def is_crawl_file(path: Path) -> bool:
    name = path.name
    return not name.startswith(".") and name.endswith(WARC_SUFFIXES)


def batched(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Group rows into lists of `size` (the last may be shorter): bounded memory per write."""
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class IngestStats:
    """Per-input outcome counts: what a user sees in the asset's metadata."""

    outcomes: Counter = field(default_factory=Counter)  # one per response/resource/conversion record
    other_records: Counter = field(default_factory=Counter)  # warcinfo, request, metadata, revisit ...
    content_types: Counter = field(default_factory=Counter)
    file_bytes: int = 0
    payload_bytes: int = 0
    text_chars: int = 0
    skipped_bytes: int = 0  # bytes jumped over while resynchronising after corruption
    errors: list[str] = field(default_factory=list)  # first few messages, with offsets
    seconds: float = 0.0

    warnings: Counter = field(default_factory=Counter)  # kept records that needed a repair (coerced field, duplicate id)

    def error(self, outcome: str, message: str) -> None:
        self.outcomes[outcome] += 1
        self._remember(outcome, message)

    def warn(self, kind: str, message: str) -> None:
        """A record that is kept, but was repaired on the way in (not an outcome of its own)."""
        self.warnings[kind] += 1
        self._remember(kind, message)

    def _remember(self, kind: str, message: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"{kind}: {message}")

    @property
    def records(self) -> int:
        return sum(self.outcomes.values())


def _find_next_record(fh, start: int, gz: bool) -> int | None:
    """Offset of the next parseable record at or after `start`, or None at EOF."""
    pos = start
    while True:
        fh.seek(pos)
        window = fh.read(_RESYNC_WINDOW)
        if not window:
            return None
        needle = _GZIP_MAGIC if gz else b"WARC/1."
        i = window.find(needle)
        while i != -1:
            cand = pos + i
            if (not gz and (cand == 0 or window[i - 1:i] == b"\n")) or (gz and _gzip_member_ok(fh, cand)):
                return cand
            i = window.find(needle, i + 1)
        pos += max(len(window) - len(needle), 1)


def _gzip_member_ok(fh, offset: int) -> bool:
    fh.seek(offset)
    try:
        head = zlib.decompressobj(31).decompress(fh.read(_RESYNC_WINDOW), 16)
    except zlib.error:
        return False
    return head.startswith(b"WARC/")


def _tail_complete(fh, offset: int, size: int, gz: bool) -> bool:
    """Whether the record starting at `offset` (the file's last) is whole, not cut off.

    A gzip member is inflated in bounded steps and the output thrown away, so a member that
    inflates to gigabytes costs time, not memory.
    """
    fh.seek(offset)
    if gz:
        d = zlib.decompressobj(31)
        try:
            for chunk in iter(lambda: fh.read(1 << 16), b""):
                data = chunk
                while data and not d.eof:
                    d.decompress(data, 1 << 20)
                    data = d.unconsumed_tail
                if d.eof:
                    return True
        except zlib.error:
            return False
        return d.eof
    tail = fh.read(1 << 16)  # the WARC headers are at the start of the record
    head, sep, _ = tail.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(sep and match) and len(head) + 4 + int(match.group(1)) <= size - offset


PAYLOAD_TYPES = (WarcRecordType.warcinfo, WarcRecordType.response, WarcRecordType.resource, WarcRecordType.conversion)


def _name(source: Path | RemoteReader) -> Path:
    return Path(source.url.rsplit("/", 1)[-1]) if isinstance(source, RemoteReader) else Path(source)


def _open(source: Path | RemoteReader) -> tuple[Path, int, BinaryIO]:
    """(name, size, a seekable binary file): a local file, or a remote one read in ranges."""
    if isinstance(source, RemoteReader):
        return _name(source), source.size, io.BufferedReader(source, buffer_size=1 << 20)
    return _name(source), Path(source).stat().st_size, open(source, "rb")  # the caller's with closes it


def iter_records(source: Path | RemoteReader, stats: IngestStats, max_record_bytes: int | None = None
                 ) -> Iterator[tuple[int, object, bytes | None, HttpResponse | None]]:
    """Yield (offset, fastwarc record, block, HTTP response), skipping over corrupt stretches of the file.

    The block is read only for PAYLOAD_TYPES; a response block that is HTTP is parsed and
    decoded by `pipelines.ingest.http` (lenient headers, chunked fallback, bounded decoding).
    Records are held back by one so that the file's last record can be checked for
    truncation before anyone sees it.
    """
    path, stats.file_bytes, fh = _open(source)
    held: tuple[int, object] | None = None
    with fh:
        head = fh.read(16)
        gz = head[:3] == _GZIP_MAGIC
        if not head:
            stats.error("empty_file", f"{path.name}: the file is empty (0 bytes)")
            return
        if not (_gzip_member_ok(fh, 0) if gz else head.startswith(b"WARC/")) and _find_next_record(fh, 0, gz) is None:
            stats.error("not_a_warc", f"{path.name}: begins with {head!r} and holds no WARC record (plain or gzip); "
                                      "is it a crawl file? Move it out of CRAWL_DIR")
            return
        start = 0
        while True:
            fh.seek(start)
            last = None
            try:
                for rec in ArchiveIterator(fh, parse_http=False, auto_decode="none"):
                    last = rec.stream_pos  # absolute: fastwarc counts from the file start even after a seek
                    if max_record_bytes and rec.content_length > max_record_bytes:
                        stats.error("too_large", f"record at byte {last} has {rec.content_length} bytes (limit {max_record_bytes})")
                        continue
                    body = rec.reader.read() if rec.record_type in PAYLOAD_TYPES else None
                    http = None
                    if body and rec.record_type == WarcRecordType.response:
                        try:
                            http = read_response(body, max_record_bytes)
                        except TooLargeError as exc:
                            stats.error("too_large", f"record at byte {last}: its HTTP body {exc} (limit {max_record_bytes})")
                            continue
                        except ValueError as exc:
                            stats.error("undecodable", f"record at byte {last}: {exc}")
                            continue
                        if http is not None and http.dechunk_fallback:
                            stats.warn("dechunk_fallback", f"record at byte {last}: `Transfer-Encoding: chunked` over a "
                                                           "body that is not chunked (already de-chunked by the crawler); "
                                                           "read as sent")
                    if held is not None:
                        yield held
                    held = (last, rec, body, http)
                break
            except OSError as exc:  # fastwarc: corrupt gzip member or unparseable record
                failed_at = last if last is not None else start
                resume = _find_next_record(fh, failed_at + 1, gz)
                end = resume if resume is not None else stats.file_bytes
                stats.skipped_bytes += end - failed_at
                if resume is None:
                    stats.error("truncated", f"{path.name}: unreadable from byte {failed_at} to end of file ({exc})")
                    break
                stats.error("corrupt_record", f"{path.name}: bytes {failed_at}-{resume} skipped ({exc})")
                start = resume
        if held is not None:
            if _tail_complete(fh, held[0], stats.file_bytes, gz):
                yield held
            else:
                stats.skipped_bytes += stats.file_bytes - held[0]
                stats.error("truncated", f"{path.name}: last record at byte {held[0]} is cut off (incomplete download?)")


def crawl_name_for(path: Path, warcinfo: dict[str, str] | None = None) -> str:
    """Crawl id from the warcinfo `isPartOf` field, else from a CC-MAIN-YYYY-WW file name, else the stem."""
    if warcinfo and warcinfo.get("isPartOf"):
        return warcinfo["isPartOf"]
    m = _CRAWL_IN_NAME.search(path.name)
    return m.group(0) if m else path.name.split(".")[0]


def _parse_warc_fields(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def ingest_warc(source: Path | RemoteReader, origin_file: str, *, extractor: str = "resiliparse", min_text_chars: int = 1,
                max_record_bytes: int | None = 20 << 20, batch_size: int = 1000,
                stats: IngestStats | None = None, progress=None) -> Iterator[list[dict]]:
    """Yield batches of document rows (DOCUMENT_SCHEMA) from one WARC or WET file.

    `stats` is filled as the file is read; the generator never raises for bad
    records, only for an unreadable file (missing, permission denied).
    """
    stats = stats if stats is not None else IngestStats()
    rows = _iter_rows(source, origin_file, extractor, min_text_chars, max_record_bytes, stats)
    return batched(_with_progress(rows, stats, progress), batch_size)


def _with_progress(rows: Iterable[dict], stats: IngestStats, progress, every_s: float = 10.0) -> Iterator[dict]:
    """Call `progress(message)` at most every `every_s` seconds while rows flow (long files)."""
    last = time.perf_counter()
    for row in rows:
        yield row
        if progress and time.perf_counter() - last >= every_s:
            last = time.perf_counter()
            progress(f"{stats.records} records read, {stats.outcomes['kept']} documents kept, "
                     f"{stats.file_bytes and stats.payload_bytes / 2**20:.1f} MB of payload")


def _iter_rows(source, origin_file, extractor, min_text_chars, max_record_bytes, stats) -> Iterator[dict]:
    t0 = time.perf_counter()
    warcinfo: dict[str, str] | None = None
    path = _name(source)
    for offset, rec, body, http in iter_records(source, stats, max_record_bytes=max_record_bytes):
        rtype = rec.record_type
        if rtype == WarcRecordType.warcinfo:
            warcinfo = _parse_warc_fields(body)
            stats.other_records["warcinfo"] += 1
            continue
        if rtype not in (WarcRecordType.response, WarcRecordType.resource, WarcRecordType.conversion):
            stats.other_records[str(rtype).rsplit(".", 1)[-1]] += 1
            continue
        row = _record_to_row(rec, http.body if http else body, http, offset, path, origin_file, warcinfo, extractor,
                             min_text_chars, stats)
        if row is not None:
            yield row
    stats.seconds = time.perf_counter() - t0


def target_uri(raw: str | None) -> str | None:
    """The target URI without the `<...>` some writers (Wget 1.20) put around it."""
    if not raw:
        return None
    raw = raw.strip()
    return raw[1:-1].strip() if raw.startswith("<") and raw.endswith(">") else raw


def _crawler_record(url: str | None) -> str | None:
    """The outcome of a record that is about the crawl, not a web page: `dns`, `crawler_log`, `robots_txt`."""
    if not url:
        return None
    scheme = url.split(":", 1)[0].lower()
    if scheme == "dns":
        return "dns"
    if scheme not in ("http", "https"):  # metadata://gnu.org/software/wget/warc/wget.log, urn:X-wpull:log, ...
        return "crawler_log"
    path = url.split("://", 1)[-1].split("/", 1)[1] if "/" in url.split("://", 1)[-1] else ""
    if path.split("?")[0].lower() == "robots.txt":
        return "robots_txt"
    return None


def _record_to_row(rec, body, http, offset, path, origin_file, warcinfo, extractor, min_text_chars, stats) -> dict | None:
    url = target_uri(rec.headers.get("WARC-Target-URI"))
    where = f"{origin_file} @ byte {offset} ({url})"
    not_a_page = _crawler_record(url)
    if not_a_page:  # crawler logs, DNS lookups, robots.txt: counted, never documents
        stats.outcomes[not_a_page] += 1
        return None
    if rec.record_type == WarcRecordType.response:
        if http is None:
            stats.error("not_http", where)
            return None
        if http.status != 200:
            stats.outcomes[f"http_{http.status}"] += 1
            return None
        content_type, declared = http.content_type, http.charset
    else:  # resource / conversion: the block is the document
        content_type = (rec.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        declared = "utf-8" if rec.record_type == WarcRecordType.conversion else None
    stats.content_types[content_type or "unknown"] += 1
    if content_type not in HTML_TYPES + TEXT_TYPES:
        stats.outcomes["unsupported_content_type"] += 1
        return None
    stats.payload_bytes += len(body)
    if not body.strip():
        stats.outcomes["empty_payload"] += 1
        return None
    try:
        text, charset = decode_payload(body, declared)
    except UndecodableError as exc:
        stats.error("undecodable", f"{where}: {exc}")
        return None
    except BinaryContentError as exc:
        stats.error("binary_content", f"{where}: {exc}")
        return None
    title = None
    if content_type in HTML_TYPES:
        try:
            title, text = extract_main_text(text, extractor)
        except Exception as exc:  # a parser failure on one page must not stop the file
            stats.error("extraction_failed", f"{where}: {exc!r}")
            return None
    text = text.replace("\ufeff", "")  # a byte-order mark inside the body is not text
    if len(text) < min_text_chars:
        stats.outcomes["no_text"] += 1
        return None
    # WET conversion records point at the response they were made from: same id for both.
    native = rec.headers.get("WARC-Refers-To") if rec.record_type == WarcRecordType.conversion else None
    record_id = native or rec.record_id or f"{origin_file}@{offset}"
    stats.outcomes["kept"] += 1
    stats.text_chars += len(text)
    return {
        "id": document_id("web", record_id),
        "source": "web",
        "url": url,
        "crawl": crawl_name_for(path, warcinfo),
        "date": rec.record_date,
        "title": title,
        "text": text,
        "content_type": content_type,
        "charset": charset,
        "origin_file": origin_file,
        "origin_offset": offset,
        "origin_id": record_id,
        "raw_bytes": len(body),
    }
