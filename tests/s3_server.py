"""A real S3-compatible HTTP server on 127.0.0.1 for the object-storage tests.

It is s3rver (npm), a file-backed S3 server: no MinIO, SeaweedFS or Ceph build installs
from the package registries this project may use, so this is the fallback the
object-storage issue allows (docs/s3.md says which servers were tried and why). It runs
as its own process and keeps objects as files, so a test can kill it mid-acquisition and
restart it over the same data. Install it with
``npm install --prefix tests/.s3rver s3rver@3.7.1`` (``.ci/run`` does); without it the
object-storage tests are skipped, saying so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

INSTALLED = Path(__file__).parent / ".s3rver" / "node_modules" / ".bin" / "s3rver"
ACCESS_KEY = SECRET_KEY = "S3RVER"  # s3rver's fixed credentials


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """Start, stop and restart the server over one data directory."""

    def __init__(self, root: Path, bucket: str) -> None:
        self.root = root
        self.bucket = bucket
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def command() -> str | None:
        configured = os.environ.get("OME_STREAM_S3RVER")
        if configured:
            return configured
        if INSTALLED.exists() and shutil.which("node"):
            return str(INSTALLED)
        return shutil.which("s3rver")

    def start(self) -> None:
        command = self.command()
        assert command is not None
        self.process = subprocess.Popen(
            [
                command,
                "--directory",
                str(self.root),
                "--address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--configure-bucket",
                self.bucket,
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/{self.bucket}", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the S3 server did not start on {self.endpoint}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
