"""HTTP responses inside WARC records, parsed leniently the way real crawlers wrote them.

fastwarc's own HTTP parsing stops at what real archives contain: LF-only header lines
(ClueWeb09, Nutch) are read as one long header, and a `Transfer-Encoding: chunked` header
kept over a body the crawler had already de-chunked (pywb) makes the whole record fail.
Here the header block ends at the first blank line of either style, de-chunking falls back
to the body as sent when it is not valid chunked encoding, and the Content-Encoding is undone
with the record size limit applied to the decoded bytes (`decode_content`).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

_CHARSET = re.compile(r"charset\s*=\s*[\"']?([^\"';\s]+)", re.IGNORECASE)


class TooLargeError(ValueError):
    """A payload bigger than the configured limit once decoded."""


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names, first occurrence wins
    body: bytes = b""
    dechunk_fallback: bool = False  # "chunked" declared, but the body was not chunked

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        m = _CHARSET.search(self.headers.get("content-type", ""))
        return m.group(1).lower() if m else None


def split_http(block: bytes) -> HttpResponse | None:
    """Status, headers and raw body of an HTTP response block; None if the block is not one."""
    if not block.startswith(b"HTTP/"):
        return None
    ends = [(i, n) for i, n in ((block.find(b"\r\n\r\n"), 4), (block.find(b"\n\n"), 2)) if i != -1]
    end, sep = min(ends) if ends else (len(block), 0)
    lines = block[:end].replace(b"\r\n", b"\n").split(b"\n")
    parts = lines[0].split(None, 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return None
    headers: dict[str, str] = {}
    name = None
    for line in lines[1:]:
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t") and name:  # folded continuation line
            headers[name] += " " + text.strip()
            continue
        key, colon, value = text.partition(":")
        if colon:
            name = key.strip().lower()
            headers.setdefault(name, value.strip())
    return HttpResponse(status, headers, block[end + sep:])


def dechunk(body: bytes) -> bytes | None:
    """The body without chunked transfer encoding, or None if it is not validly chunked."""
    out, pos = [], 0
    while True:
        eol = body.find(b"\n", pos)
        if eol == -1:
            return None
        size_text = body[pos:eol].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None
        if size == 0:
            return b"".join(out)
        start = eol + 1
        if start + size > len(body):
            return None
        out.append(body[start:start + size])
        pos = start + size
        if body[pos:pos + 2] == b"\r\n":
            pos += 2
        elif body[pos:pos + 1] == b"\n":
            pos += 1
        else:
            return None


def decode_content(body: bytes, encoding: str | None, limit: int | None) -> bytes:
    """Undo an HTTP Content-Encoding (gzip, deflate, br), never holding more than `limit` decoded bytes.

    Decoding here rather than in fastwarc bounds memory on compression bombs: a 13 KB record
    can otherwise inflate to gigabytes before any size check sees it.
    """
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity", "none"):
        return body
    cap = limit + 1 if limit else 0  # zlib: 0 = no limit
    if enc in ("gzip", "x-gzip", "deflate"):
        for wbits in ((47,) if enc != "deflate" else (15, -15)):  # deflate: zlib-wrapped, or raw as some servers send
            try:
                out = zlib.decompressobj(wbits).decompress(body, cap)
                break
            except zlib.error:
                continue
        else:
            return body  # declared but not compressed: servers do this; the body is as sent
    elif enc == "br":
        import brotli

        try:
            out = brotli.Decompressor().process(body, output_buffer_limit=cap) if cap else brotli.decompress(body)
        except brotli.error:
            return body
    else:
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    if limit and len(out) > limit:
        raise TooLargeError(f"decodes to more than {limit} bytes ({enc})")
    return out


def read_response(block: bytes, limit: int | None) -> HttpResponse | None:
    """`split_http`, then transfer and content decoding (raises TooLargeError / ValueError)."""
    http = split_http(block)
    if http is None:
        return None
    if "chunked" in http.headers.get("transfer-encoding", "").lower():
        plain = dechunk(http.body)
        if plain is None:
            http.dechunk_fallback = True
        else:
            http.body = plain
    http.body = decode_content(http.body, http.headers.get("content-encoding"), limit)
    return http
