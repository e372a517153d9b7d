"""Crawl files that are not on this machine: a Common Crawl paths listing (`warc.paths.gz`, one path
per line under a base URL) and the files it names, read over HTTP(S) or from S3 while they are parsed.

A remote file is read through `HttpRangeReader`, a seekable file object over HTTP Range requests:
one streaming GET from the current position, re-opened at the same byte after a seek (ingest
resynchronizes past corrupt records and checks the last record) or after a transient error, with
exponential backoff. Nothing is downloaded whole to disk first, and a dropped connection in the
middle of a 1 GB WARC costs one reconnect, not the file.
"""

from __future__ import annotations

import gzip
import http.client
import io
import random
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from pipelines.contract import param, require
from pipelines.lake import s3_filesystem

TRANSIENT_STATUS = (408, 425, 429, 500, 502, 503, 504)
_SAMPLE = re.compile(r"^(all|first:(\d+)|random:(\d+):(\d+)|shard:(\d+)/(\d+))$")


@dataclass(frozen=True)
class CrawlListing:
    """Where a crawl snapshot's file list is, and which of its files become partitions."""

    listing: str = param("", "warc.paths(.gz): a local file or an http(s):// or s3:// URL, one crawl-file path per line")
    base_url: str = param("", "prefix each listed path is joined to: https://data.commoncrawl.org/ or s3://commoncrawl/")
    sample: str = param("all", "which listed files become partitions: all | first:N | random:N:SEED | shard:I/K")
    attempts: int = param(6, "tries per request before a file fails (connection errors, timeouts, 5xx, 408, 429)")
    backoff_s: float = param(1.0, "wait before the second try; doubles for each further one")
    timeout_s: float = param(60.0, "socket timeout of one request")

    def __post_init__(self):
        require(bool(_SAMPLE.match(self.sample)), self, "sample", "use all, first:N, random:N:SEED or shard:I/K (0 <= I < K)")
        m = _SAMPLE.match(self.sample)
        require(not m.group(5) or int(m.group(5)) < int(m.group(6)), self, "sample", "shard:I/K needs 0 <= I < K")
        require(self.attempts >= 1 and self.backoff_s >= 0 and self.timeout_s > 0, self, "attempts",
                "attempts >= 1, backoff_s >= 0 and timeout_s > 0")

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def select(self, paths: list[str]) -> list[str]:
        """The sample of `paths`, in listing order (so partitions keep the crawl's order)."""
        m = _SAMPLE.match(self.sample)
        if m.group(2):
            return paths[: int(m.group(2))]
        if m.group(3):
            chosen = set(random.Random(int(m.group(4))).sample(range(len(paths)), min(int(m.group(3)), len(paths))))
            return [p for i, p in enumerate(paths) if i in chosen]
        if m.group(5):
            return paths[int(m.group(5)):: int(m.group(6))]
        return list(paths)

    def paths(self) -> list[str]:
        """The selected crawl-file paths of the listing."""
        if self.listing.startswith(("http://", "https://", "s3://")):
            with open_remote(self.listing, self) as fh:
                data = fh.read()
        else:
            with open(self.listing, "rb") as fh:
                data = fh.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        lines = [line.strip() for line in data.decode("utf-8").splitlines()]
        return self.select([line for line in lines if line and not line.startswith("#")])


class RemoteFileError(OSError):
    """A remote crawl file that cannot be read (not found, refused, or still failing after every retry)."""


class RemoteReader(io.RawIOBase):
    """A read-only, seekable remote file: what ingest reads in place of a local path."""

    url: str
    size: int
    etag: str | None = None
    last_modified: str | None = None
    reconnects: int = 0  # dropped connections resumed mid-file

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


def open_remote(url: str, policy: CrawlListing) -> RemoteReader:
    """An http(s):// or s3:// URL as a seekable file."""
    if url.startswith("s3://"):
        return S3Reader(url, policy)
    if url.startswith(("http://", "https://")):
        return HttpRangeReader(url, policy)
    raise ValueError(f"{url}: a crawl base URL or listing must start with http://, https:// or s3://")


class S3Reader(RemoteReader):
    """An object in S3 or an S3-compatible store, through pyarrow's S3 filesystem (ranged GETs, AWS's standard
    retries). Credentials and region come from the usual AWS variables; AWS_ENDPOINT_URL points at MinIO & co."""

    def __init__(self, url: str, policy: CrawlListing):
        super().__init__()
        from pyarrow import fs

        self.url = url
        s3 = s3_filesystem(policy.attempts, policy.timeout_s)
        path = url.removeprefix("s3://")
        try:
            info = s3.get_file_info(path)
            if info.type != fs.FileType.File:
                raise FileNotFoundError(path)
            self._file = s3.open_input_file(path)
        except OSError as exc:
            raise RemoteFileError(f"{url}: {exc}; is the base URL / listing right, and are AWS credentials "
                                  "(and AWS_ENDPOINT_URL for a non-AWS store) set?") from exc
        self.size = info.size
        self.last_modified = info.mtime.isoformat() if info.mtime else None

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def readinto(self, buffer) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()
        super().close()


class HttpRangeReader(RemoteReader):
    """A read-only, seekable file over HTTP Range requests, retrying transient failures from the same byte."""

    def __init__(self, url: str, policy: CrawlListing, opener=urllib.request.urlopen):
        super().__init__()
        self.url, self.policy, self._opener = url, policy, opener
        self._pos, self._stream, self._stream_pos = 0, None, None
        self.reconnects = 0
        head = self._request("HEAD", None)
        head.close()
        self.size = int(head.headers.get("Content-Length", -1))
        self.etag = head.headers.get("ETag")
        self.last_modified = head.headers.get("Last-Modified")
        if self.size < 0:
            raise RemoteFileError(f"{url}: the server sent no Content-Length, so the file cannot be read by ranges")

    def _open(self, method: str, start: int | None):
        """One request (from byte `start`): a permanent HTTP error becomes RemoteFileError, a transient one is raised as is."""
        req = urllib.request.Request(self.url, method=method)
        if start is not None:
            req.add_header("Range", f"bytes={start}-")
        try:
            return self._opener(req, timeout=self.policy.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code in TRANSIENT_STATUS:
                raise
            raise RemoteFileError(f"{method} {self.url}: HTTP {exc.code} {exc.reason}; is the base URL / listing right, "
                                  "and may this machine read it?") from exc

    def _request(self, method: str, start: int | None):
        for attempt in range(self.policy.attempts):
            try:
                return self._open(method, start)
            except RemoteFileError:
                raise
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                error = exc
            if attempt + 1 < self.policy.attempts:
                time.sleep(self.policy.backoff_s * 2 ** attempt)
        raise RemoteFileError(f"{method} {self.url}: still failing after {self.policy.attempts} tries: {error}")

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        if self._pos >= self.size or not len(buffer):
            return 0
        for attempt in range(self.policy.attempts):
            try:
                if self._stream is None or self._stream_pos != self._pos:
                    self._close_stream()
                    self._stream = self._open("GET", self._pos)  # this loop retries
                    if self._stream.status != 206 and self._pos:
                        raise RemoteFileError(f"GET {self.url}: the server ignored the Range header (HTTP {self._stream.status})")
                    self._stream_pos = self._pos
                n = self._stream.readinto(buffer)
                if n == 0:  # the connection ended before the file did
                    raise http.client.IncompleteRead(b"", self.size - self._pos)
                self._pos += n
                self._stream_pos = self._pos
                return n
            except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
                if isinstance(exc, RemoteFileError):
                    raise
                self._close_stream()
                self.reconnects += 1
                error = exc
                if attempt + 1 < self.policy.attempts:
                    time.sleep(self.policy.backoff_s * 2 ** attempt)
        raise RemoteFileError(f"GET {self.url} at byte {self._pos}: still failing after {self.policy.attempts} tries: {error}")

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream, self._stream_pos = None, None

    def close(self) -> None:
        self._close_stream()
        super().close()
