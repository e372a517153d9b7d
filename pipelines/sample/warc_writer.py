"""Minimal deterministic WARC/1.0 writer shaped like Common Crawl's output.

Each record is its own gzip member (as in CC files), written with mtime 0 so the
same seed yields byte-identical files.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def sha1_digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def http_response(body: bytes, content_type: str, status: str = "200 OK", extra: dict | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
             "Server: nginx", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_request(url: str) -> bytes:
    host = url.split("/")[2]
    path = "/" + "/".join(url.split("/")[3:])
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: CCBot/2.0 (https://commoncrawl.org/faq/)\r\n"
            "Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: br,gzip\r\nConnection: Keep-Alive\r\n\r\n").encode()


@dataclass
class WarcFileWriter:
    """Writes records to an in-memory buffer; `close()` writes the file in one go."""

    path: Path
    compress: bool
    rng_uuid: callable
    _buf: io.BytesIO = field(default_factory=io.BytesIO)
    offsets: list[int] = field(default_factory=list)

    def new_id(self) -> str:
        return f"<urn:uuid:{uuid.UUID(int=self.rng_uuid(), version=4)}>"

    def write(self, warc_type: str, block: bytes, headers: dict[str, str]) -> tuple[str, int]:
        record_id = headers.pop("WARC-Record-ID", None) or self.new_id()
        head = {"WARC-Type": warc_type, "WARC-Record-ID": record_id, **headers}
        if warc_type in ("request", "response", "metadata", "conversion", "resource"):
            head["WARC-Block-Digest"] = sha1_digest(block)
        head["Content-Length"] = str(len(block))
        raw = ("WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode("utf-8")
        raw += block + b"\r\n\r\n"
        offset = self._buf.tell()
        self.offsets.append(offset)
        if self.compress:
            raw = gzip.compress(raw, compresslevel=6, mtime=0)
        self._buf.write(raw)
        return record_id, offset

    def getvalue(self) -> bytes:
        return self._buf.getvalue()

    def close(self) -> None:
        self.path.write_bytes(self._buf.getvalue())
