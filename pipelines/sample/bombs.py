"""Compression bombs at three levels of a crawl file, for the reliability tests and benchmark.

- `http`: an HTTP body with `Content-Encoding: gzip` that inflates to `inflated_bytes`;
- `member`: the file's last gzip member holds a small record followed by `inflated_bytes` zeros;
- `file`: a plain gzip stream (not a WARC) that inflates to `inflated_bytes`.

Each file is small on disk (zeros compress about 1000:1) and is written in streaming steps,
so building a bomb never holds its inflated size in memory either.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from pipelines.sample.warc_writer import sha1_digest

_CHUNK = 1 << 24


def _gzip_zeros(n: int) -> bytes:
    """A gzip stream of `n` zero bytes, built a chunk at a time."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zero = bytes(_CHUNK)
    parts, left = [], n
    while left:
        step = min(left, _CHUNK)
        parts.append(z.compress(zero[:step]))
        left -= step
    parts.append(z.flush())
    return b"".join(parts)


def _record(warc_type: str, block: bytes, url: str, content_type: str) -> bytes:
    head = {"WARC-Type": warc_type, "WARC-Record-ID": f"<urn:uuid:00000000-0000-4000-8000-{len(block):012d}>",
            "WARC-Date": "2024-01-01T00:00:00Z", "WARC-Target-URI": url, "Content-Type": content_type,
            "WARC-Block-Digest": sha1_digest(block), "Content-Length": str(len(block))}
    return ("WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() + block + b"\r\n\r\n"


def _member(raw: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return z.compress(raw) + z.flush()


def write_bomb(path: Path, kind: str, inflated_bytes: int) -> Path:
    page = b"<html><body><p>" + b"A normal page before the bomb. " * 20 + b"</p></body></html>"
    normal = _member(_record("response", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + page,
                             "https://bomb.example.com/ok", "application/http; msgtype=response"))
    if kind == "http":
        body = _gzip_zeros(inflated_bytes)
        http = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        data = normal + _member(_record("response", http, "https://bomb.example.com/http", "application/http; msgtype=response"))
    elif kind == "member":  # a small record whose gzip member goes on inflating after it
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = [z.compress(_record("resource", page, "https://bomb.example.com/member", "text/html"))]
        left, zero = inflated_bytes, bytes(_CHUNK)
        while left:
            step = min(left, _CHUNK)
            parts.append(z.compress(zero[:step]))
            left -= step
        data = normal + b"".join([*parts, z.flush()])
    elif kind == "file":
        data = _gzip_zeros(inflated_bytes)
    else:
        raise ValueError(f"unknown bomb kind {kind!r}: http, member or file")
    Path(path).write_bytes(data)
    return Path(path)
