"""A small client for the floe host, shared by the tests and the examples.

Everything goes over Arrow Flight with JSON commands; nothing is pickled.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight

TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/floe/target"))
HOST_BIN = Path(os.environ.get("FLOE_HOST_BIN", TARGET_DIR / "release" / "host"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    """The real `host` binary, serving a warehouse on loopback."""

    def __init__(
        self,
        warehouse: Path,
        *args: str,
        port: int | None = None,
        serve_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        """`serve -w warehouse -p port *args`, or exactly `serve_args` (which must
        then name the same warehouse and port, e.g. through --config or the
        environment); `env` is added to this process's environment."""
        self.warehouse = Path(warehouse)
        self.port = port or free_port()
        self.log_path = self.warehouse.parent / f"host-{self.port}.log"
        self.args = serve_args or ["serve", "-w", str(self.warehouse), "-p", str(self.port), *args]
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, **(env or {})}

    @property
    def location(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Host":
        self.warehouse.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(HOST_BIN), *self.args], stdout=self._log, stderr=self._log, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"host exited with {self.proc.returncode}:\n{self.log()}")
            try:
                Client(self.location).action("healthcheck")
                return self
            except flight.FlightUnavailableError:
                time.sleep(0.1)
        raise TimeoutError(f"host did not answer within {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Client:
    def __init__(self, location: str):
        self.flight = flight.FlightClient(location)

    def put(self, command: dict | list, data: pa.Table | pa.RecordBatchReader, max_chunksize: int | None = None) -> dict:
        """Upload `data` with DoPut; returns the PutResult's JSON. A table's row
        count goes with it (expect_rows): the host commits nothing if fewer arrive."""
        if isinstance(command, dict) and isinstance(data, pa.Table) and "expect_batches" not in command:
            command = {"expect_rows": data.num_rows, **command}
        descriptor = (
            flight.FlightDescriptor.for_path(*command)
            if isinstance(command, list)
            else flight.FlightDescriptor.for_command(json.dumps(command))
        )
        writer, reader = self.flight.do_put(descriptor, data.schema)
        if isinstance(data, pa.Table):
            writer.write_table(data, max_chunksize=max_chunksize)
        else:
            for batch in data:
                writer.write_batch(batch)
        writer.done_writing()
        result = reader.read()
        writer.close()
        return json.loads(result.to_pybytes()) if result is not None else {}

    def info(self, command: dict) -> flight.FlightInfo:
        return self.flight.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)))

    def read(self, command: dict) -> pa.Table:
        """GetFlightInfo, then DoGet on its ticket."""
        info = self.info(command)
        return self.flight.do_get(info.endpoints[0].ticket).read_all()

    def get(self, command: dict) -> pa.Table:
        """DoGet with the command as the ticket, no planning round trip."""
        return self.flight.do_get(flight.Ticket(json.dumps(command).encode())).read_all()

    def action(self, name: str, body: dict | None = None):
        results = list(self.flight.do_action(flight.Action(name, json.dumps(body or {}).encode())))
        return json.loads(results[0].body.to_pybytes())

    def rows(self, table: str) -> int:
        return self.read({"sql": f"SELECT count(*) AS n FROM {table}"}).column("n")[0].as_py()
