"""Token shards: raw little-endian token streams plus a document index, as memmap readers expect.

    <split>/<NNNNN>.ds         tokens, uint16 when the vocabulary fits, else uint32 (no header:
                               np.memmap(path, dtype) reads it, as nanoGPT does with train.bin)
    <split>/<NNNNN>.ds.index   uint64 cumulative document ends (datatrove's .ds/.ds.index layout)
    <split>/<NNNNN>.ds.metadata  datatrove's companion: "<tokenizer>|<bytes per token>" then the token
                               count; the tokenizer is given as `../tokenizer`, relative to the shard's folder
    manifest.json              dtype, eos id, shards with token/doc counts and hashes, lineage

Every document ends with EOS. Shards close at document boundaries once they reach
`shard_tokens`. Files are written to a temp name and renamed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xxhash

from pipelines.lake import file_hash


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


@dataclass
class ShardWriter:
    """Appends EOS-terminated documents to one split; rolls over to a new shard at `shard_tokens`."""

    directory: Path
    dtype: np.dtype
    eos_id: int
    shard_tokens: int
    shards: list[dict] = field(default_factory=list)
    _buf: list[np.ndarray] = field(default_factory=list)
    _ends: list[int] = field(default_factory=list)
    _n: int = 0

    def add(self, ids: list[int]) -> None:
        arr = np.empty(len(ids) + 1, dtype=self.dtype)
        arr[:-1] = ids
        arr[-1] = self.eos_id
        self._buf.append(arr)
        self._n += len(arr)
        self._ends.append(self._n)
        if self._n >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if not self._ends:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{len(self.shards):05d}.ds"
        tokens = np.concatenate(self._buf)
        index = np.asarray(self._ends, dtype="<u8")
        metadata = ds_metadata(self.dtype, len(tokens)).encode()
        for suffix, data in (("", tokens), (".index", index), (".metadata", metadata)):
            final = self.directory / (name + suffix)
            tmp = self.directory / f".{final.name}.{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(data) if isinstance(data, bytes) else data.tofile(tmp)
            os.replace(tmp, final)
        self.shards.append({"file": name, "tokens": int(len(tokens)), "documents": len(index),
                            "hash": file_hash(self.directory / name)})
        self._buf, self._ends, self._n = [], [], 0


def read_shard(path: Path, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(tokens memmap, cumulative document ends)."""
    size = Path(path).stat().st_size
    if size % dtype.itemsize:
        raise ValueError(f"{path}: {size} bytes is not a whole number of {dtype} tokens (truncated or corrupt)")
    tokens = np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)
    ends = np.fromfile(str(path) + ".index", dtype="<u8")
    return tokens, ends


def ds_metadata(dtype: np.dtype, tokens: int) -> str:
    """datatrove's `.ds.metadata` for a shard: the tokenizer (the copy beside the splits) | bytes per token, token count."""
    return f"../{TOKENIZER_SUBDIR}|{dtype.itemsize}\n{tokens}"


def iter_documents(path: Path, dtype: np.dtype) -> Iterable[np.ndarray]:
    tokens, ends = read_shard(path, dtype)
    start = 0
    for end in ends:
        yield tokens[start:end]
        start = int(end)


def validate_shards(root: Path, manifest: dict, decode=None, texts_by_position: dict | None = None) -> list[str]:
    """Problems found (empty list = valid): sizes vs index, EOS at every document end,
    token ids within the vocabulary, hashes, and, given `decode`, exact round trips of
    the sample documents in `texts_by_position` {(split, shard, doc): text}."""
    problems = []
    dtype = np.dtype(manifest["dtype"])
    eos, vocab = manifest["eos_id"], manifest["vocab_size"]
    for split, shards in manifest["splits"].items():
        for shard in shards:
            path = Path(root) / split / shard["file"]
            if not path.exists() or not Path(str(path) + ".index").exists():
                problems.append(f"{path}: missing data or index file")
                continue
            try:
                tokens, ends = read_shard(path, dtype)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if len(ends) and int(ends[-1]) != len(tokens):
                problems.append(f"{path}: index says {int(ends[-1]) if len(ends) else 0} tokens, file holds {len(tokens)}")
                continue
            if len(ends) != shard["documents"] or len(tokens) != shard["tokens"]:
                problems.append(f"{path}: manifest counts differ from the files")
            meta = Path(str(path) + ".metadata")
            if not meta.exists() or meta.read_text() != ds_metadata(dtype, len(tokens)):
                problems.append(f"{path}.metadata: missing or disagrees with the shard (datatrove reads it)")
            if file_hash(path) != shard["hash"]:
                problems.append(f"{path}: content hash differs from the manifest")
            if len(ends) and not (tokens[ends - 1] == eos).all():
                problems.append(f"{path}: {(tokens[ends - 1] != eos).sum()} documents do not end with EOS")
            if len(tokens) and int(tokens.max()) >= vocab:
                problems.append(f"{path}: token id {int(tokens.max())} outside the vocabulary ({vocab})")
    if decode and texts_by_position:
        for (split, shard_file, doc), text in texts_by_position.items():
            path = Path(root) / split / shard_file
            tokens, ends = read_shard(path, dtype)
            start = int(ends[doc - 1]) if doc else 0
            got = decode(tokens[start:int(ends[doc]) - 1].tolist())
            if got != text:
                problems.append(f"{path} document {doc}: decode(encode(text)) differs from the text")
    return problems


TOKENIZER_SUBDIR = "tokenizer"  # the tokenizer the shards were encoded with travels inside the shard directory


def tokenizer_dir(shards_dir: Path) -> Path:
    """The tokenizer that made these shards: what a model trained on them must use."""
    return Path(shards_dir) / TOKENIZER_SUBDIR


def manifest_hash(manifest: dict) -> str:
    """Data version of a shard set: its shard hashes plus what produced them."""
    h = xxhash.xxh3_128()
    for split in sorted(manifest["splits"]):
        for shard in manifest["splits"][split]:
            h.update(f"{split}/{shard['file']}:{shard['hash']}".encode())
    h.update(manifest["tokenizer_hash"].encode())
    return h.hexdigest()




def to_megatron(ds_path: Path, out_prefix: Path, dtype: np.dtype) -> None:
    """Convert one .ds/.ds.index shard to Megatron-LM's indexed dataset (.bin + .idx, MMIDIDX v1)."""
    tokens, ends = read_shard(ds_path, dtype)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    sizes = (ends.astype(np.int64) - starts).astype(np.int32)
    code = 8 if dtype == np.dtype("<u2") else 4
    out_dtype = np.dtype("<u2") if code == 8 else np.dtype("<i4")
    np.asarray(tokens, dtype=out_dtype).tofile(str(out_prefix) + ".bin")
    pointers = (starts * out_dtype.itemsize).astype("<i8")
    with open(str(out_prefix) + ".idx", "wb") as fh:
        fh.write(b"MMIDIDX\x00\x00")
        fh.write(np.array([1], dtype="<u8").tobytes())
        fh.write(np.array([code], dtype="<u1").tobytes())
        fh.write(np.array([len(sizes)], dtype="<u8").tobytes())
        fh.write(np.array([len(sizes) + 1], dtype="<u8").tobytes())
        fh.write(sizes.astype("<i4").tobytes())
        fh.write(pointers.tobytes())
        fh.write(np.arange(len(sizes) + 1, dtype="<i8").tobytes())


def read_megatron(prefix: Path) -> list[np.ndarray]:
    """Read back a Megatron .bin/.idx pair (used to verify the converter)."""
    raw = Path(str(prefix) + ".idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00", "not a Megatron index"
    code = raw[17]
    n = int(np.frombuffer(raw[18:26], dtype="<u8")[0])
    sizes = np.frombuffer(raw[34:34 + 4 * n], dtype="<i4")
    pointers = np.frombuffer(raw[34 + 4 * n:34 + 12 * n], dtype="<i8")
    dtype = np.dtype("<u2") if code == 8 else np.dtype("<i4")
    data = np.fromfile(str(prefix) + ".bin", dtype=dtype)
    return [data[p // dtype.itemsize:p // dtype.itemsize + s] for p, s in zip(pointers, sizes)]
