"""A real S3-compatible server for the tests: moto's server (`moto[server]`, pinned in
tests/requirements.txt), a separate process on a loopback port, stopped at the end.
moto over s3s-fs: it installs with the virtualenv (no second cargo build), speaks the
whole S3 API floe and DuckDB use (multipart uploads, ListObjectsV2, batch deletes),
and keeps objects in its own memory, so nothing is left behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

from floe_client import free_port

REGION = "us-east-1"


class S3Server:
    def __init__(self, checks_credentials: bool = False):
        """With `checks_credentials`, requests must be signed by a key the server
        issued (moto's IAM: a user and its access key, made before auth is on)."""
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.checks_credentials = checks_credentials
        self.key_id, self.secret = "floe-test", "floe-test-secret"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a host (or any AWS client) needs to reach the server."""
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> "S3Server":
        server = Path(sys.executable).parent / "moto_server"
        # The first four requests (the readiness probe, then `_issue_key`'s three)
        # need no signature; every later one does.
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"} if self.checks_credentials else None
        self.proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                if self.checks_credentials:
                    self._issue_key()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
                time.sleep(0.1)
        raise TimeoutError("moto_server did not answer within 30 s")

    def _issue_key(self):
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id="x",
                           aws_secret_access_key="x")
        iam.create_user(UserName="floe")
        iam.put_user_policy(UserName="floe", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="floe")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key_id,
                            aws_secret_access_key=self.secret, region_name=REGION)

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
        return {"s3.endpoint": self.endpoint, "s3.access-key-id": self.key_id, "s3.secret-access-key": self.secret,
                "s3.region": REGION, "s3.path-style-access": "true"}

    def duckdb_secret(self) -> str:
        return (f"CREATE SECRET (TYPE s3, KEY_ID '{self.key_id}', SECRET '{self.secret}', REGION '{REGION}', "
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
