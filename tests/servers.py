"""Local servers the tests start on 127.0.0.1 and stop: helpers shared by fixtures."""

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from serving.process import free_port


def wait_for_http(url: str, proc=None, timeout_s: float = 30) -> None:
    """Until `url` answers (any status); fails early if `proc` exits."""
    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.time() > deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"the test HTTP server at {url} did not come up") from None
            time.sleep(0.2)


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1 (an empty store); yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
