"""The serving app as a local background process: start, find, wait for, stop.

Used by the `deployment` asset (the documented local deployment; production uses the k8s
template in deploy/k8s/) and by tests. The lake records the running server in
`<lake>/serving/server.json` (pid, url, config), so a later deployment reloads it instead of
starting a second one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipelines.contract import config_to_dict
from pipelines.lake import Lake, atomic_write_bytes
from pipelines.parallel import process_alive
from serving.config import ServeConfig

SERVER_FILE = "server.json"


def _record_path(lake: Lake) -> Path:
    return lake.serving_dir() / SERVER_FILE


def call(url: str, body: dict | None = None, key: str | None = None, timeout: float = 60.0) -> tuple[int, dict | str]:
    """GET (or POST `body`) with an optional API key: (status, parsed JSON, or the text of other answers)."""
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, headers=headers,
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, kind, raw = r.status, r.headers.get_content_type(), r.read().decode()
    except urllib.error.HTTPError as e:
        status, kind, raw = e.code, e.headers.get_content_type(), e.read().decode()
    return status, json.loads(raw) if kind == "application/json" else raw


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running_server(lake: Lake) -> dict | None:
    """The recorded server if its process is alive and answers /health."""
    path = _record_path(lake)
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if not process_alive(rec["pid"]):
        return None
    try:
        status, _ = call(rec["url"] + "/health", timeout=2)
    except OSError:
        return None
    return rec if status == 200 else None


def wait_ready(url: str, version: str | None = None, timeout: float = 120.0, process: subprocess.Popen | None = None) -> dict:
    """Poll /ready until the server serves `version` (any version when None)."""
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was ready (see its log)")
        try:
            status, body = call(url + "/ready", timeout=2)
            last = f"{status} {body}"
            if status == 200 and (version is None or body.get("version") == version):
                return body
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not serve version {version or 'any'} within {timeout:.0f}s (last: {last})")


def start_server(lake: Lake, cfg: ServeConfig, timeout: float = 120.0) -> dict:
    """Start `python -m serving serve` in its own session, logging to <lake>/serving/server.log."""
    d = lake.serving_dir()
    d.mkdir(parents=True, exist_ok=True)
    config_path = d / "server-config.json"
    atomic_write_bytes(config_path, json.dumps(config_to_dict(cfg), indent=2).encode())
    url = f"http://{cfg.host}:{cfg.port}"
    with open(d / "server.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "serving", "--lake", str(lake.root), "serve", "--config", str(config_path),
                                 "--no-bootstrap-key"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    rec = {"pid": proc.pid, "url": url, "started_at": time.time(), "config": str(config_path), "log": str(d / "server.log")}
    try:
        wait_ready(url, timeout=timeout, process=proc)
    except (RuntimeError, TimeoutError) as exc:
        proc.kill()
        proc.wait()
        tail = (d / "server.log").read_text(errors="replace").splitlines()[-5:]
        raise RuntimeError(f"{exc}; last lines of {d / 'server.log'}:\n" + "\n".join(tail)) from exc
    atomic_write_bytes(_record_path(lake), json.dumps(rec, indent=2).encode())
    return rec


def stop_server(lake: Lake, timeout: float = 30.0) -> bool:
    """SIGTERM (graceful: in-flight requests finish), SIGKILL after `timeout`. False if none ran."""
    path = _record_path(lake)
    if not path.exists():
        return False
    pid = json.loads(path.read_text())["pid"]
    stopped = False
    if process_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
        stopped = True
    path.unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie (alive to kill -0)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
