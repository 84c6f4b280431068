"""A real S3-compatible server for the tests: moto's server (`moto[server]`, pinned in
tests/requirements.txt), a separate process on a loopback port, stopped at the end.
moto over s3s-fs: it installs with the virtualenv (no second cargo build), speaks the
whole S3 API floe and DuckDB use (multipart uploads, ListObjectsV2, batch deletes),
and keeps objects in its own memory, so nothing is left behind."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

from floe_client import free_port

KEY_ID, SECRET, REGION = "floe-test", "floe-test-secret", "us-east-1"


class S3Server:
    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a host (or any AWS client) needs to reach the server."""
        return {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> "S3Server":
        server = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
                time.sleep(0.1)
        raise TimeoutError("moto_server did not answer within 30 s")

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY_ID,
                            aws_secret_access_key=SECRET, region_name=REGION)

    def bucket(self, name: str) -> str:
        """A new, empty bucket `name` (3+ characters); its s3:// URL."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, url: str) -> list[str]:
        """Every object key under `url` (s3://bucket/prefix)."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def pyiceberg_props(self) -> dict[str, str]:
        return {"s3.endpoint": self.endpoint, "s3.access-key-id": KEY_ID, "s3.secret-access-key": SECRET,
                "s3.region": REGION, "s3.path-style-access": "true"}

    def duckdb_secret(self) -> str:
        return (f"CREATE SECRET (TYPE s3, KEY_ID '{KEY_ID}', SECRET '{SECRET}', REGION '{REGION}', "
                f"ENDPOINT '127.0.0.1:{self.port}', URL_STYLE 'path', USE_SSL false)")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def environ_without_aws() -> dict[str, str]:
    """This process's environment minus any AWS settings a developer may have."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
