"""A real PostgreSQL server for the tests: the machine's binaries, a cluster in a
temporary directory, listening on loopback, stopped and removed afterwards.
PostgreSQL refuses to run as root, so as root it runs as the `postgres` user."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from floe_client import free_port


def _binary(name: str) -> str:
    """A PostgreSQL server program: on PATH, else where Debian's package puts it."""
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (tests/setup --tests installs it)")
    return str(found)


class Postgres:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="floe-pg-"))
        self.port = free_port()
        self.user = "floe"

    @property
    def uri(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/floe"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            args = ("runuser", "-u", "postgres", "--", *args)
        return subprocess.run(args, check=True, capture_output=True, text=True)

    def start(self) -> "Postgres":
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(_binary("initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", self.user)
        self.resume()
        self.sql("CREATE DATABASE floe", database="postgres")
        return self

    def pause(self):
        """Stop the server, keeping its data (a database gone for a while)."""
        self._run(_binary("pg_ctl"), "-D", str(self.dir / "data"), "-w", "-m", "fast", "stop")

    def resume(self):
        self._run(_binary("pg_ctl"), "-D", str(self.dir / "data"), "-w", "-l", str(self.dir / "log"),
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")

    def database(self, name: str) -> str:
        """A new, empty database `name` (letters, digits, `_`); its URI."""
        name = "".join(c if c.isalnum() else "_" for c in name)
        self.sql(f'CREATE DATABASE "{name}"', database="postgres")
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{name}"

    def sql(self, statement: str, database: str = "floe") -> str:
        return subprocess.run([_binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database,
                               "-At", "-c", statement], check=True, capture_output=True, text=True).stdout

    def stop(self):
        try:
            self._run(_binary("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc):
        self.stop()
