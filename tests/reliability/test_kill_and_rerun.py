import os
import signal
import subprocess
import sys
import time

from pipelines.ingest import ingest_crawl_file
from pipelines.lake import Lake

SLOW_WRITER = """
import sys, time
import pyarrow as pa
from pipelines.lake import Lake
lake = Lake(sys.argv[1])
schema = pa.schema([("id", pa.string())])
with lake.writer("raw_crawl", "p.warc.gz", schema) as w:
    for i in range(10_000):
        w.write_rows([{"id": str(i)}])
        time.sleep(0.01)
    w.commit()
"""


def test_killed_write_leaves_previous_output_and_rerun_is_idempotent(sample_dir, tmp_path):
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir())[0]
    lake = Lake(tmp_path / "lake")
    first = ingest_crawl_file(lake, sample_dir / "crawl", key)
    before = lake.data_path("raw_crawl", key).read_bytes()
    # a writer of the same partition killed mid-write
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER.replace("p.warc.gz", key), str(lake.root)])
    part_dir = lake.partition_dir("raw_crawl", key)
    deadline = time.time() + 30
    while time.time() < deadline and not list(part_dir.glob(".*.tmp")):
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(part_dir.glob(".*.tmp")), "the killed writer should have left its temp file"
    assert lake.data_path("raw_crawl", key).read_bytes() == before  # readers never saw a partial file
    again = ingest_crawl_file(lake, sample_dir / "crawl", key)
    assert again["content_hash"] == first["content_hash"]
    assert not list(part_dir.glob(".*.tmp"))  # the stale temp was cleaned by the next writer
    assert sorted(f for f in os.listdir(part_dir) if not f.endswith(".lock")) == ["manifest.json", "part-00000.parquet"]
