"""API keys, stored as SHA-256 hashes only: the plaintext is shown once, when the key is made.

    {"keys": [{"name": "alice", "sha256": "...", "role": "user",
               "requests_per_minute": null, "tokens_per_minute": null}]}

Keys are 256-bit random tokens, so an unsalted fast hash is enough (nothing to brute-force);
lookups compare digests in constant time. The file is re-read when it changes, so adding or
revoking a key needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.lake import atomic_write_bytes, exclusive

PREFIX = "lf-"


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    role: str = "user"
    requests_per_minute: int | None = None  # None: the server's default
    tokens_per_minute: int | None = None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._keys: list[ApiKey] = []

    def keys(self) -> list[ApiKey]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._keys = None, []
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text())
                self._keys = [ApiKey(**k) for k in raw.get("keys", [])]
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{self.path}: not a keys file ({exc}); fix it or recreate it with `llm-foundry-serve add-key`") from exc
            self._stamp = stamp
        return self._keys

    def verify(self, token: str | None) -> ApiKey | None:
        if not token:
            return None
        d = digest(token)
        found = None
        for k in self.keys():  # no early exit: the time taken does not say how far a guess got
            if hmac.compare_digest(k.sha256, d):
                found = k
        return found

    def add(self, name: str, role: str = "user", requests_per_minute: int | None = None, tokens_per_minute: int | None = None) -> str:
        """Create a key; returns the plaintext token (the only time it exists)."""
        if role not in ("user", "admin"):
            raise ValueError(f"role {role!r}: use 'user' or 'admin'")
        token = PREFIX + secrets.token_urlsafe(32)
        with exclusive(self.path.parent / f".{self.path.name}.lock"):
            keys = [k for k in self._read() if k.name != name]
            keys.append(ApiKey(name, digest(token), role, requests_per_minute, tokens_per_minute))
            self._write(keys)
        return token

    def revoke(self, name: str) -> bool:
        with exclusive(self.path.parent / f".{self.path.name}.lock"):
            keys = self._read()
            kept = [k for k in keys if k.name != name]
            self._write(kept)
        return len(kept) < len(keys)

    def _read(self) -> list[ApiKey]:
        self._stamp = None
        return list(self.keys())

    def _write(self, keys: list[ApiKey]) -> None:
        atomic_write_bytes(self.path, json.dumps({"keys": [asdict(k) for k in keys]}, indent=2).encode())
        os.chmod(self.path, 0o600)
