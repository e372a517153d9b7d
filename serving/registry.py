"""The model registry: every promoted version kept in the lake with its card and lineage.

    <lake>/models/registry/v0001/        checkpoint files, MODEL_CARD.md, lineage.json, version.json
    <lake>/models/registry/CURRENT       {"version": "v0002", "previous": "v0001", ...}
    <lake>/models/registry/history.jsonl every activation and rollback, in order

Registering the same weights twice returns the existing version, so re-running a deployment is
idempotent. Activation rewrites CURRENT atomically; the serving app watches it and switches
between requests, which is how promotion and rollback reach a running server.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.lake import Lake, atomic_directory, atomic_write_bytes, exclusive
from training.checkpoint import checkpoint_hash

CURRENT = "CURRENT"
HISTORY = "history.jsonl"
VERSION_FILE = "version.json"


class RegistryError(ValueError):
    """A registry operation that cannot be done as asked (unknown version, empty registry...)."""


@dataclass(frozen=True)
class Version:
    name: str
    path: Path
    checkpoint_hash: str
    registered_at: float
    source: str
    lineage: dict

    @classmethod
    def read(cls, path: Path) -> Version:
        meta = json.loads((path / VERSION_FILE).read_text())
        lineage_file = path / "lineage.json"
        lineage = json.loads(lineage_file.read_text()) if lineage_file.exists() else {}
        return cls(meta["version"], path, meta["checkpoint_hash"], meta["registered_at"], meta["source"], lineage)


class Registry:
    def __init__(self, lake: Lake):
        self.root = lake.registry_dir()

    def _lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        return exclusive(self.root / ".registry.lock")

    def versions(self) -> list[Version]:
        if not self.root.exists():
            return []
        return [Version.read(p) for p in sorted(self.root.glob("v[0-9]*")) if (p / VERSION_FILE).exists()]

    def get(self, name: str) -> Version:
        path = self.root / name
        if not (path / VERSION_FILE).exists():
            known = ", ".join(v.name for v in self.versions()) or "none"
            raise RegistryError(f"unknown model version {name!r} in {self.root} (registered: {known})")
        return Version.read(path)

    def register(self, checkpoint_dir: Path, source: str = "") -> Version:
        """Copy a checkpoint in as the next version (or return the version that has these weights)."""
        checkpoint_dir = Path(checkpoint_dir)
        if not (checkpoint_dir / "model.safetensors").exists():
            raise RegistryError(f"{checkpoint_dir} is not a checkpoint (no model.safetensors); promote a model first")
        digest = checkpoint_hash(checkpoint_dir)
        with self._lock():
            for v in self.versions():
                if v.checkpoint_hash == digest:
                    return v
            name = f"v{len(self.versions()) + 1:04d}"
            with atomic_directory(self.root / name) as tmp:
                shutil.copytree(checkpoint_dir, tmp, dirs_exist_ok=True)
                meta = {"version": name, "checkpoint_hash": digest, "registered_at": time.time(), "source": source or str(checkpoint_dir)}
                (tmp / VERSION_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return self.get(name)

    def pointer(self) -> dict:
        """CURRENT as a dict ({} when nothing was activated yet)."""
        path = self.root / CURRENT
        return json.loads(path.read_text()) if path.exists() else {}

    def current(self) -> Version:
        name = self.pointer().get("version")
        if not name:
            raise RegistryError(f"no active model version in {self.root}: register and activate one "
                                "(materialize `deployment`, or `llm-foundry-serve register --activate`)")
        return self.get(name)

    def previous(self) -> Version | None:
        name = self.pointer().get("previous")
        return self.get(name) if name else None

    def activate(self, name: str, reason: str = "promote") -> dict:
        """Make `name` the served version; the one it replaces becomes the fallback."""
        self.get(name)
        with self._lock():
            old = self.pointer().get("version")
            if old == name:
                return self.pointer()
            previous = old or self.pointer().get("previous")
            pointer = {"version": name, "previous": previous, "activated_at": time.time(), "reason": reason}
            atomic_write_bytes(self.root / CURRENT, json.dumps(pointer, indent=2, sort_keys=True).encode())
            with open(self.root / HISTORY, "a") as fh:
                fh.write(json.dumps(pointer, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return pointer

    def rollback(self, name: str | None = None) -> dict:
        """Serve `name` again (default: the previous version)."""
        target = name or self.pointer().get("previous")
        if not target:
            raise RegistryError("nothing to roll back to: no previous version is recorded; name one with --version")
        return self.activate(target, reason="rollback")

    def history(self) -> list[dict]:
        path = self.root / HISTORY
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
