"""Crawl files listed in a snapshot's warc.paths.gz and read over HTTP: a real server on 127.0.0.1
(RangeHTTPServer, Python's file server with Range support) serves the sample crawl."""

import functools
import gzip
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from RangeHTTPServer import RangeRequestHandler

from pipelines.ingest import ingest_crawl_file
from pipelines.ingest.remote import CrawlListing, HttpRangeReader, RemoteFileError
from pipelines.lake import Lake
from serving.process import free_port
from tests.servers import wait_for_http


@pytest.fixture(scope="module")
def crawl_site(sample_dir, tmp_path_factory):
    """The sample crawl under crawl-data/ plus a gzipped paths listing, served on 127.0.0.1; yields (base URL, keys)."""
    root = tmp_path_factory.mktemp("site")
    keys = []
    for f in sorted((sample_dir / "crawl").iterdir()):
        key = f"crawl-data/SAMPLE-2026/segments/0/warc/{f.name}"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / key)
        keys.append(key)
    (root / "warc.paths.gz").write_bytes(gzip.compress(("\n".join(keys) + "\n").encode()))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "RangeHTTPServer", str(port), "--bind", "127.0.0.1"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/warc.paths.gz", proc)
        yield url, keys
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _documents(manifest: dict) -> pa.Table:
    """The partition's rows without `origin_file`, which is the partition key (the listed path or the local name)."""
    return pq.read_table(manifest["path"]).drop_columns(["origin_file"])


def test_a_listing_and_its_samples(tmp_path):
    paths = [f"crawl-data/x/{i}.warc.gz" for i in range(10)]
    listing = tmp_path / "warc.paths.gz"
    listing.write_bytes(gzip.compress(("# a comment\n" + "\n".join(paths) + "\n\n").encode()))
    assert CrawlListing(listing=str(listing)).paths() == paths
    assert CrawlListing(listing=str(listing), sample="first:3").paths() == paths[:3]
    assert CrawlListing(listing=str(listing), sample="shard:1/4").paths() == [paths[1], paths[5], paths[9]]
    chosen = CrawlListing(listing=str(listing), sample="random:4:7").paths()
    assert len(chosen) == 4 and chosen == sorted(chosen, key=paths.index)  # in listing order
    assert chosen == CrawlListing(listing=str(listing), sample="random:4:7").paths()  # seeded
    assert chosen != CrawlListing(listing=str(listing), sample="random:4:8").paths()
    with pytest.raises(ValueError, match="first:N"):
        CrawlListing(listing=str(listing), sample="some")
    with pytest.raises(ValueError, match="I < K"):
        CrawlListing(listing=str(listing), sample="shard:4/4")


def test_remote_ingest_gives_the_local_bytes(crawl_site, sample_dir, tmp_path):
    base, keys = crawl_site
    listing = CrawlListing(listing=f"{base}/warc.paths.gz", base_url=base, backoff_s=0.01)
    assert listing.paths() == keys
    empty = tmp_path / "no-local-files"
    empty.mkdir()
    for key in keys:  # the sample has a corrupt record: ingest seeks past it, over HTTP ranges
        local = ingest_crawl_file(Lake(tmp_path / "local"), sample_dir / "crawl", key.rsplit("/", 1)[1])
        remote = ingest_crawl_file(Lake(tmp_path / "remote"), empty, key, listing=listing)
        assert _documents(remote) == _documents(local) and remote["rows"] == local["rows"] > 0
        assert remote["outcomes"] == local["outcomes"] and len(remote["errors"]) == len(local["errors"])
        assert remote["inputs"]["url"] == f"{base}/{key}" and remote["inputs"]["reconnects"] == 0


def test_a_missing_remote_file_names_the_url(crawl_site, tmp_path):
    base, _ = crawl_site
    with pytest.raises(RemoteFileError, match=r"HTTP 404.*base URL"):
        ingest_crawl_file(Lake(tmp_path / "lake"), tmp_path, "crawl-data/nope.warc.gz",
                          listing=CrawlListing(listing="x", base_url=base))


class _DropsEachFirstConnection(RangeRequestHandler):
    """Sends half of each file's first GET, then closes the connection (a transient network failure)."""

    dropped: set = set()

    def copyfile(self, source, outputfile):
        if self.command == "GET" and self.path not in self.dropped:
            self.dropped.add(self.path)
            data = source.read()
            outputfile.write(data[: len(data) // 2])
            self.close_connection = True
            self.connection.shutdown(2)
            return
        super().copyfile(source, outputfile)


def test_a_dropped_connection_resumes_from_the_same_byte(sample_dir, tmp_path):
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir())[0]
    handler = functools.partial(_DropsEachFirstConnection, directory=str(sample_dir / "crawl"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        listing = CrawlListing(listing="x", base_url=base, backoff_s=0.01)
        with HttpRangeReader(listing.url(key), listing) as fh:
            assert fh.read() == (sample_dir / "crawl" / key).read_bytes() and fh.reconnects == 1
        _DropsEachFirstConnection.dropped.clear()
        remote = ingest_crawl_file(Lake(tmp_path / "remote"), tmp_path, key, listing=listing)
        local = ingest_crawl_file(Lake(tmp_path / "local"), sample_dir / "crawl", key)
        assert remote["content_hash"] == local["content_hash"] and remote["inputs"]["reconnects"] >= 1  # same key: same bytes
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_keeps_failing_gives_up_with_the_url(tmp_path):
    port = free_port()  # nothing listens there
    listing = CrawlListing(listing="x", base_url=f"http://127.0.0.1:{port}", attempts=3, backoff_s=0.01)
    t0 = time.perf_counter()
    with pytest.raises(RemoteFileError, match=rf"127.0.0.1:{port}/a.warc.gz: still failing after 3 tries"):
        HttpRangeReader(listing.url("a.warc.gz"), listing)
    assert time.perf_counter() - t0 < 10
    assert os.environ.get("CRAWL_LISTING") is None  # the test set-up points nothing at a real crawl


def test_crawl_files_in_an_s3_bucket(s3_env, sample_dir, tmp_path):
    from pyarrow import fs

    s3 = fs.S3FileSystem(endpoint_override=s3_env, region="us-east-1", allow_bucket_creation=True)
    s3.create_dir("crawl")
    keys = []
    for f in sorted((sample_dir / "crawl").iterdir()):
        keys.append(f"crawl-data/SAMPLE-2026/{f.name}")
        with s3.open_output_stream(f"crawl/{keys[-1]}", compression=None) as out:  # the bytes as they are, .gz or not
            out.write(f.read_bytes())
    with s3.open_output_stream("crawl/warc.paths.gz", compression=None) as out:
        out.write(gzip.compress("\n".join(keys).encode()))
    listing = CrawlListing(listing="s3://crawl/warc.paths.gz", base_url="s3://crawl/")
    assert listing.paths() == keys
    for key in keys:
        local = ingest_crawl_file(Lake(tmp_path / "local"), sample_dir / "crawl", key.rsplit("/", 1)[1])
        remote = ingest_crawl_file(Lake(tmp_path / "s3"), tmp_path, key, listing=listing)
        assert _documents(remote) == _documents(local) and remote["rows"] == local["rows"] > 0
        assert remote["inputs"]["url"] == f"s3://crawl/{key}"
        assert remote["inputs"]["size"] == (sample_dir / "crawl" / key.rsplit("/", 1)[1]).stat().st_size
    with pytest.raises(RemoteFileError, match="s3://crawl/nope.warc.gz"):
        ingest_crawl_file(Lake(tmp_path / "s3"), tmp_path, "nope.warc.gz", listing=listing)
