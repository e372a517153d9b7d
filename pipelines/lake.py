"""The lake: Parquet per asset and partition under one root, atomic writes, DuckDB views.

Layout (documented in README):

    <LAKE_DIR>/<asset>/<partition>/part-00000.parquet   partitioned assets
    <LAKE_DIR>/<asset>/<partition>/manifest.json        row count, content hash, stats
    <LAKE_DIR>/<asset>/_all/...                          unpartitioned assets
    <LAKE_DIR>/catalog.duckdb                            one view per asset (read-only use)
    <LAKE_DIR>/rejection_ledger/<stage>/<partition>/...  every removed document, with its reason
    <LAKE_DIR>/dedup_index/index.json, runs/, docs/      the MinHash/exact index (sorted key runs, merged)
    <LAKE_DIR>/models/<model>/checkpoint/                Hugging Face checkpoints (+ lineage.json)
    <LAKE_DIR>/models/promoted/                          the promoted checkpoint and its model card
    <LAKE_DIR>/models/registry/<version>/                every promoted version served (+ CURRENT pointer)
    <LAKE_DIR>/serving/                                  API keys (hashed), the local server's state, request logs
    <LAKE_DIR>/evals/<model>.json                        eval results per model

Only this module joins lake paths; every other module asks `Lake` for them. Writers of one
target take an flock on an empty `.<name>.lock` beside it; lock files are never deleted
(deleting one while another process waits on it would let two writers in).

Writers put data in a hidden temp file in the target directory and `os.replace` it
into place, so a reader or a crashed run never sees a half-written file.

Object storage: `Lake.at("s3://bucket/prefix")` keeps the tables (every asset's Parquet and
manifest, the rejection ledger, the dedup index, the catalog) in the bucket under the same layout,
through pyarrow's S3 filesystem (AWS_ENDPOINT_URL for MinIO and other S3-compatible stores). An
object is written under a hidden temp key and then copied over its final key in one server-side
copy, so readers see the old or the new object, never part of one. Directories of files that
tools open by path (models, tokenizer, token shards, eval reports, serving state) stay in the
lake's local work directory (`root`: LAKE_WORK_DIR). Writers of one object are serialized by
Dagster (one run per partition, the `dedup_index` pool), not by a lock in the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from pyarrow import fs as pafs

UNPARTITIONED = "_all"
DATA_FILE = "part-00000.parquet"
MANIFEST_FILE = "manifest.json"
CATALOG_FILE = "catalog.duckdb"
CATALOG_STORAGE_VERSION = "v1.0.0"  # readable by DuckDB 1.0 and later (tested with the 1.5 CLI)
LEDGER = "rejection_ledger"
PROMOTED = "promoted"
_SAFE = re.compile(r"[^A-Za-z0-9._=-]")
MAX_DIRNAME = 200  # leaves room for the `.<name>.<uuid>.tmp` siblings of atomic swaps within NAME_MAX (255)


def partition_dirname(partition_key: str | None) -> str:
    """A file-system-safe, readable and collision-free directory name for a partition key."""
    if partition_key is None:
        return UNPARTITIONED
    safe = _SAFE.sub("_", partition_key).lstrip(".") or "_"
    if safe != partition_key or len(safe) > MAX_DIRNAME:
        safe = safe[: MAX_DIRNAME - 9] + "-" + xxhash.xxh3_64_hexdigest(partition_key.encode())[:8]
    return safe


def sql_string(value: str) -> str:
    """A SQL string literal (quotes doubled): paths may contain quotes."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an flock on `lock_path` (created if missing): one writer of a target at a time."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _swap_leftovers(final: Path, suffix: str) -> list[Path]:
    """`.<name>.<id>.tmp` / `.old` siblings of `final` (exactly its name: not `<name>.state`'s)."""
    return sorted(p for p in final.parent.glob(f".*.{suffix}") if p.name[1:].rsplit(".", 2)[0] == final.name)


def _finish_swap(final: Path) -> bool:
    """Complete an interrupted swap of `final` (the caller holds its lock); True if it restored one.

    `atomic_directory` renames the old directory aside, then the new one into place: a kill
    between the two leaves only `.<name>.<id>.old`, the last committed version, which is
    renamed back. An `.old` beside a committed directory is just removed.
    """
    restored = False
    for old in _swap_leftovers(final, "old"):
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(final)
            restored = True
    return restored


def recover_swaps(parent: Path) -> list[str]:
    """Finish every interrupted directory swap in `parent`, each under its writer's lock."""
    parent = Path(parent)
    names = sorted({old.name[1:].rsplit(".", 2)[0] for old in parent.glob(".*.old")}) if parent.is_dir() else []
    restored = []
    for name in names:
        with exclusive(parent / f".{name}.lock"):
            if _finish_swap(parent / name):
                restored.append(name)
    return restored


def file_hash(path: Path) -> str:
    """xxh3-128 of a file's bytes: the content hash behind Dagster data versions."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def manifest_of(partition_dir: Path) -> dict:
    """The manifest of a partition directory known only by its path (training and evaluation are
    handed directories, e.g. the token shards, not a Lake)."""
    return json.loads((Path(partition_dir) / MANIFEST_FILE).read_text())


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Build a directory beside `final`, then swap it into place in two renames.

    Readers see the old or the new directory, never a half-written one; an exception or
    kill inside the block leaves `final` untouched (the temp directory is removed, or
    left hidden for the next writer's cleanup).
    """
    final = Path(final)
    with exclusive(final.parent / f".{final.name}.lock"):
        _finish_swap(final)
        for stale in _swap_leftovers(final, "tmp"):  # left by a killed writer (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            yield tmp
            old = final.parent / f".{final.name}.{uuid.uuid4().hex}.old"
            if final.exists():
                final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class AtomicParquetWriter:
    """Streams record batches into a temp file; `commit()` renames it into place.

    Leaving the context without `commit()` (an exception, a kill) removes the temp file.
    A second writer of the same file waits for the first (an flock held until commit or
    abort), so two runs of one partition never delete each other's temp files.
    """

    def __init__(self, path: Path, schema: pa.Schema, row_group_size: int = 2048):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path.parent / f".{self.path.name}.lock", "a")  # noqa: SIM115 (held until commit/abort)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # left by a killed writer (we hold the lock)
            stale.unlink(missing_ok=True)
        self.tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}.tmp"
        self.schema = schema
        self.row_group_size = row_group_size
        self.rows = 0
        self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd", write_statistics=True)

    def write_rows(self, rows: list[dict]) -> None:
        if rows:
            self.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def write_table(self, table: pa.Table) -> None:
        self._writer.write_table(table.cast(self.schema), row_group_size=self.row_group_size)
        self.rows += table.num_rows

    def commit(self) -> str:
        """Close, fsync and rename into place; returns the file's content hash."""
        self._writer.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        self._lock.close()
        return file_hash(self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        self._lock.close()

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp.exists():
            self.abort()


def _visible_files(directory: Path) -> set[str]:
    """Files under `directory` (relative, posix), hidden ones (locks, temp files) left out."""
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)}


def s3_filesystem(attempts: int = 5, timeout_s: float | None = None) -> pafs.S3FileSystem:
    """pyarrow's S3 client as every s3:// read and write here makes it: credentials and region from the usual
    AWS variables, AWS_ENDPOINT_URL for MinIO and other S3-compatible stores, AWS's standard retries."""
    timeouts = {} if timeout_s is None else {"connect_timeout": timeout_s, "request_timeout": timeout_s}
    return pafs.S3FileSystem(endpoint_override=os.environ.get("AWS_ENDPOINT_URL") or None,
                             retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts), **timeouts)


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


@dataclass(frozen=True)
class ObjectStore:
    """Tables in an object store (`s3://bucket/prefix`), keys laid out as in a local lake."""

    url: str
    staging: Path  # local temp files of writers before upload

    @cached_property
    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        scheme = self.url.split("://", 1)[0]
        if scheme != "s3":
            raise ValueError(f"{self.url}: the lake on object storage takes s3:// URLs (AWS, MinIO, GCS's S3 API, ...)")
        return s3_filesystem(), self.url.removeprefix("s3://").rstrip("/")

    @property
    def fs(self) -> pafs.FileSystem:
        return self._fs_and_base[0]

    def key(self, *parts: str) -> str:
        return "/".join([self._fs_and_base[1], *parts])

    def uri(self, key: str) -> str:
        return f"s3://{key}"

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(key).type == pafs.FileType.File

    def get_bytes(self, key: str) -> bytes:
        try:
            with self.fs.open_input_stream(key, compression=None) as fh:
                return fh.read()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.uri(key)} does not exist") from exc

    def put(self, key: str, write) -> None:
        """`write(stream)` to a hidden temp key beside `key`, then one server-side copy over `key`."""
        parent, name = key.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(tmp, compression=None) as out:
                write(out)
            self.fs.move(tmp, key)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self.put(key, lambda out: out.write(data))

    def put_file(self, local: Path, key: str) -> None:
        def copy(out):
            with open(local, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)

        self.put(key, copy)

    def files(self, prefix: str) -> list[str]:
        """Keys under `prefix` (recursive), hidden names (temp keys, locks) left out."""
        infos = self.fs.get_file_info(pafs.FileSelector(prefix, allow_not_found=True, recursive=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and not any(
            part.startswith(".") for part in i.path[len(prefix):].split("/")))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(key)

    def duckdb_filesystem(self):
        """This store's client as an fsspec filesystem DuckDB can read `s3://` paths through."""
        from fsspec.implementations.arrow import ArrowFSWrapper

        class S3(ArrowFSWrapper):
            protocol = "s3"

        return S3(self.fs)


class UploadingParquetWriter:
    """An `AtomicParquetWriter` into a local staging file; `commit()` uploads it to its key atomically."""

    def __init__(self, store: ObjectStore, key: str, schema: pa.Schema):
        self.store, self.key, self.path = store, key, store.uri(key)
        self._local = AtomicParquetWriter(store.staging / key, schema)

    @property
    def rows(self) -> int:
        return self._local.rows

    def write_rows(self, rows: list[dict]) -> None:
        self._local.write_rows(rows)

    def write_table(self, table: pa.Table) -> None:
        self._local.write_table(table)

    def commit(self) -> str:
        content_hash = self._local.commit()
        try:
            self.store.put_file(self._local.path, self.key)
        finally:
            self._local.path.unlink(missing_ok=True)
        return content_hash

    def __enter__(self) -> UploadingParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._local.__exit__(exc_type, exc, tb)


def default_work_dir(url: str) -> Path:
    """The local work directory of an object-store lake: LAKE_WORK_DIR, else one per URL in the user's cache."""
    env = os.environ.get("LAKE_WORK_DIR")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/llm-foundry/lakes").expanduser() / xxhash.xxh3_64_hexdigest(url.encode())


@dataclass(frozen=True)
class Lake:
    root: Path  # the lake, or for a lake on object storage its local work directory
    url: str | None = None  # s3://bucket/prefix: where the tables live (None: under root)

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).resolve())

    @classmethod
    def at(cls, location: str | Path, work_dir: Path | None = None) -> Lake:
        """A lake at a local path or an `s3://` URL (tables there, the rest in `work_dir`)."""
        if is_url(str(location)):
            url = str(location).rstrip("/")
            return cls(work_dir or default_work_dir(url), url)
        return cls(Path(location))

    @cached_property
    def store(self) -> ObjectStore | None:
        return ObjectStore(self.url, self.root / ".staging") if self.url else None

    def _key(self, asset: str, partition_key: str | None, name: str) -> str:
        return self.store.key(asset, partition_dirname(partition_key), name)

    def data_location(self, asset: str, partition_key: str | None = None) -> str:
        """Where a partition's Parquet file is: a local path, or its s3:// URL (what manifests record)."""
        return self.store.uri(self._key(asset, partition_key, DATA_FILE)) if self.store else str(self.data_path(asset, partition_key))

    def has_data(self, asset: str, partition_key: str | None = None) -> bool:
        if self.store:
            return self.store.exists(self._key(asset, partition_key, DATA_FILE))
        return self.data_path(asset, partition_key).exists()

    def read_table(self, asset: str, partition_key: str | None = None, columns: list[str] | None = None) -> pa.Table:
        if self.store:
            return pq.read_table(self._key(asset, partition_key, DATA_FILE), columns=columns, filesystem=self.store.fs)
        return pq.read_table(self.data_path(asset, partition_key), columns=columns)

    def partition_dir(self, asset: str, partition_key: str | None = None) -> Path:
        return self.root / asset / partition_dirname(partition_key)

    def data_path(self, asset: str, partition_key: str | None = None) -> Path:
        return self.partition_dir(asset, partition_key) / DATA_FILE

    def manifest_path(self, asset: str, partition_key: str | None = None) -> Path:
        return self.partition_dir(asset, partition_key) / MANIFEST_FILE

    @contextlib.contextmanager
    def writer(self, asset: str, partition_key: str | None, schema: pa.Schema) -> Iterator[AtomicParquetWriter | UploadingParquetWriter]:
        if self.store:
            with UploadingParquetWriter(self.store, self._key(asset, partition_key, DATA_FILE), schema) as w:
                yield w
            return
        with AtomicParquetWriter(self.data_path(asset, partition_key), schema) as w:
            yield w

    def write_manifest(self, asset: str, partition_key: str | None, manifest: dict) -> str:
        data = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        if self.store:
            key = self._key(asset, partition_key, MANIFEST_FILE)
            self.store.put_bytes(key, data)
            return self.store.uri(key)
        path = self.manifest_path(asset, partition_key)
        atomic_write_bytes(path, data)
        return str(path)

    def has_manifest(self, asset: str, partition_key: str | None = None) -> bool:
        if self.store:
            return self.store.exists(self._key(asset, partition_key, MANIFEST_FILE))
        return self.manifest_path(asset, partition_key).exists()

    def read_manifest(self, asset: str, partition_key: str | None = None) -> dict:
        if self.store:
            return json.loads(self.store.get_bytes(self._key(asset, partition_key, MANIFEST_FILE)))
        return json.loads(self.manifest_path(asset, partition_key).read_text())

    def manifests(self, asset: str) -> list[dict]:
        """Every partition's manifest of `asset`, in directory order."""
        if self.store:
            prefix = self.store.key(asset) + "/"
            keys = [k for k in self.store.files(prefix) if k[len(prefix):].count("/") == 1 and k.endswith("/" + MANIFEST_FILE)]
            return [json.loads(self.store.get_bytes(k)) for k in keys]
        return [json.loads(p.read_text()) for p in sorted((self.root / asset).glob(f"*/{MANIFEST_FILE}"))]

    def ledger_partition(self, stage: str, partition_key: str) -> str:
        """The rejection-ledger partition of one stage's removals for one crawl partition."""
        return f"{stage}/{partition_key}"

    def dedup_index_dir(self) -> Path:
        return self.root / "dedup_index"

    def model_dir(self, model: str) -> Path:
        """Where a model asset keeps its checkpoint, training job file and resume state."""
        return self.root / "models" / model

    def checkpoint_dir(self, model: str) -> Path:
        return self.model_dir(model) / "checkpoint"

    def training_job_path(self, model: str) -> Path:
        """The job file (paths, config, lineage) a model asset hands to `training.cli`."""
        return self.model_dir(model) / "job.json"

    def training_error_path(self, model: str) -> Path:
        """Where the training process leaves its error, for the run's failure message."""
        return self.model_dir(model) / "error.txt"

    def promoted_dir(self) -> Path:
        return self.model_dir(PROMOTED)

    def openlineage_log(self) -> Path:
        """OpenLineage events, one JSON object per line (the default file transport)."""
        return self.root / "openlineage" / "events.jsonl"

    def gguf_path(self) -> Path:
        """The promoted model as one GGUF file, for llama.cpp and the tools built on it."""
        return self.model_dir("gguf") / "model.gguf"

    def registry_dir(self) -> Path:
        """The model registry: one directory per served version and the CURRENT pointer."""
        return self.root / "models" / "registry"

    def serving_dir(self) -> Path:
        """The serving app's state: keys file (hashes only), local server record and log, request logs."""
        return self.root / "serving"

    def api_keys_path(self) -> Path:
        return self.serving_dir() / "keys.json"

    def request_log_dir(self) -> Path:
        return self.serving_dir() / "logs"

    def eval_path(self, model: str) -> Path:
        return self.root / "evals" / f"{model}.json"

    def run_failures_path(self) -> Path:
        return self.root / "run_failures.jsonl"

    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    def assets(self) -> list[str]:
        """Asset directories that hold at least one committed Parquet file."""
        if self.store:
            prefix = self.store.key() + "/"
            parts = [k[len(prefix):].split("/") for k in self.store.files(prefix)]
            return sorted({p[0] for p in parts if len(p) == 3 and p[2] == DATA_FILE})
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob(f"*/{DATA_FILE}")))

    def glob(self, asset: str) -> str:
        if self.store:
            return self.store.uri(self.store.key(asset, "*", DATA_FILE))
        return str(self.root / asset / "*" / DATA_FILE)

    def _view_sql(self, asset: str, relative: bool = False) -> str:
        path = f"{asset}/*/{DATA_FILE}" if relative and not self.store else self.glob(asset)
        return (f"CREATE OR REPLACE VIEW {sql_identifier(asset)} AS "
                f"SELECT * FROM read_parquet({sql_string(path)}, union_by_name=true)")

    def _duckdb(self, database: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """DuckDB that reads this lake's s3:// paths through the lake's own S3 client.

        DuckDB's httpfs extension is a run-time download from extensions.duckdb.org (and PyPI's
        httpfs wheels stop at DuckDB 1.5), so the S3 client is handed to DuckDB as an fsspec
        filesystem instead: same credentials, endpoint and retries as every other lake read.
        """
        con = duckdb.connect(database, read_only=read_only)
        if self.store:
            con.register_filesystem(self.store.duckdb_filesystem())
        return con

    def connect(self) -> duckdb.DuckDBPyConnection:
        """In-memory DuckDB with one view per asset; no file lock, safe beside running writers."""
        con = self._duckdb()
        for asset in self.assets():
            con.execute(self._view_sql(asset))
        return con

    def recover(self) -> list[str]:
        """Finish every directory swap a kill interrupted (see `recover_swaps`); run before a stage."""
        models = self.promoted_dir().parent
        parents = [models, *(p for p in self.root.glob("*") if p.is_dir()),
                   *(p for p in models.glob("*") if p.is_dir())]
        return [name for parent in parents for name in recover_swaps(parent)]

    def write_catalog(self) -> Path:
        """(Re)build `catalog.duckdb` with the same views, atomically, under a lock.

        The views hold globs relative to the lake root, so a moved or copied lake reads its own
        files (`cd lake && duckdb -readonly catalog.duckdb`, or `SET file_search_path` to the
        lake); from elsewhere a query fails instead of reading another lake. The file is written
        in DuckDB storage version CATALOG_STORAGE_VERSION so the DuckDB 1.x CLIs users install
        can open it (the Python package is 2.0). Globs keep the views valid as partitions are
        added; a rebuild is needed only when a new asset appears. On object storage the views
        name s3:// globs (a DuckDB CLI reads them with its httpfs extension) and the file is
        uploaded beside the tables as well.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.catalog_path()
        with open(self.root / ".catalog.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tmp = self.root / f".{CATALOG_FILE}.{uuid.uuid4().hex}.tmp"
            try:
                con = self._duckdb()
                con.execute(f"SET file_search_path = {sql_string(str(self.root))}")
                con.execute(f"ATTACH {sql_string(str(tmp))} AS catalog (STORAGE_VERSION {sql_string(CATALOG_STORAGE_VERSION)})")
                con.execute("USE catalog")
                for asset in self.assets():
                    con.execute(self._view_sql(asset, relative=True))
                con.close()
                if self.store:
                    self.store.put_file(tmp, self.store.key(CATALOG_FILE))
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return target

    def open_catalog(self) -> duckdb.DuckDBPyConnection:
        """`catalog.duckdb`, read-only, with its relative paths resolved against this lake."""
        con = self._duckdb(str(self.catalog_path()), read_only=True)
        con.execute(f"SET file_search_path = {sql_string(str(self.root))}")
        return con

    @contextlib.contextmanager
    def synced(self, local_dir: Path, commit_file: str) -> Iterator[Path]:
        """`local_dir` (under root) mirrored from and back to the store, for a directory of immutable
        files named by one commit file (the dedup index's index.json).

        Before the block: the commit file and every file missing here are downloaded. After it: new
        files are uploaded first, the commit file last (one atomic copy: readers see the old or the
        new set), then files the commit no longer keeps are deleted. A local lake yields `local_dir`.
        """
        if not self.store:
            yield local_dir
            return
        local_dir = Path(local_dir)
        prefix = self.store.key(local_dir.relative_to(self.root).as_posix()) + "/"
        remote = {k[len(prefix):] for k in self.store.files(prefix)}
        local_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(remote):
            path = local_dir / name
            if name == commit_file or not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, self.store.get_bytes(prefix + name))
        for name in _visible_files(local_dir) - remote:  # an exact mirror: what the store does not hold is gone
            (local_dir / name).unlink()
        yield local_dir
        here = _visible_files(local_dir)
        for name in sorted(here - remote - {commit_file}):
            self.store.put_file(local_dir / name, prefix + name)
        if commit_file in here:
            self.store.put_file(local_dir / commit_file, prefix + commit_file)
        for name in sorted(remote - here):
            self.store.delete(prefix + name)
