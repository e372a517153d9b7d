"""Fault injection for WARC files: truncation, flipped bytes, oversized records.

Used by the reliability tests and `benchmarks/reliability_bench.py`. A fault never
touches more than the gzip members it lands in, so every record outside them is a
"good record" that ingest must recover.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from pipelines.sample.warc_writer import WarcFileWriter, http_response


@dataclass
class FuzzedFile:
    path: Path
    faults: list[str]
    good_urls: set[str]  # response records whose bytes no fault touched


def build_warc(path: Path, n_pages: int, seed: int, huge_every: int = 0, huge_bytes: int = 0):
    """A gzip WARC of simple HTML responses; returns (member spans [(start, end, url)], writer)."""
    rng = random.Random(seed)
    w = WarcFileWriter(path, compress=True, rng_uuid=lambda: rng.getrandbits(128))
    spans = []
    for i in range(n_pages):
        url = f"https://fuzz.example.com/{seed}/{i}"
        text = " ".join(rng.choice(["alpha", "river", "market", "bridge", "station"]) for _ in range(60))
        body = f"<html><body><article><p>{i} {text}.</p></article></body></html>".encode()
        if huge_every and i % huge_every == huge_every - 1:
            body += b"<!--" + b"x" * huge_bytes + b"-->"
        start = len(w.getvalue())
        w.write("response", http_response(body, "text/html; charset=utf-8"),
                {"WARC-Date": "2024-01-01T00:00:00Z", "WARC-Target-URI": url, "Content-Type": "application/http; msgtype=response"})
        spans.append((start, len(w.getvalue()), url))
    w.close()
    return spans


def fuzz(src: Path, spans, out: Path, rng: random.Random, n_flips: int, truncate: bool) -> FuzzedFile:
    data = bytearray(src.read_bytes())
    faults, hit = [], set()
    for _ in range(n_flips):
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
        faults.append(f"flip@{pos}")
        hit |= {url for s, e, url in spans if s <= pos < e}
    if truncate:
        cut = rng.randrange(len(data) // 2, len(data))
        del data[cut:]
        faults.append(f"truncate@{cut}")
        hit |= {url for s, e, url in spans if e > cut}
    out.write_bytes(bytes(data))
    return FuzzedFile(out, faults, {url for _, _, url in spans} - hit)
