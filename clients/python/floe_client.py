"""A small client for the floe host, shared by the tests and the examples.

Everything goes over Arrow Flight with JSON commands; nothing is pickled.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

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
        probe: bool = True,
    ):
        """`serve -w warehouse -p port *args`, or exactly `serve_args` (which must
        then name the same warehouse and port, e.g. through --config or the
        environment); `env` is added to this process's environment. Without `probe`
        (a TLS host, say), readiness is the log's "listening" line, not a call."""
        self.warehouse = Path(warehouse)
        self.port = port or free_port()
        self.log_path = self.warehouse.parent / f"host-{self.port}.log"
        self.args = serve_args or ["serve", "-w", str(self.warehouse), "-p", str(self.port), *args]
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, **(env or {})}
        self.probe = probe

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
            if not self.probe:
                if "floe host listening" in self.log():
                    return self
                time.sleep(0.1)
                continue
            try:
                Client(self.location).action("healthcheck")
                return self
            except flight.FlightUnauthenticatedError:
                return self  # up, and it wants credentials
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


def endpoint_batches(info: flight.FlightInfo, connect: Callable[[str | None], flight.FlightClient],
                     options: flight.FlightCallOptions, parallel: int = 8) -> pa.RecordBatchReader:
    """Every endpoint of `info`, fetched in parallel (up to `parallel` at once), as one
    stream of batches in arrival order. `connect(location)` gives a client for a
    location (None: the host that planned the read); each endpoint is read from its
    first location that answers. A split read's endpoints list its hosts in a
    different order each, so fetching them in parallel spreads the work. Memory stays bounded: each fetch waits while the consumer is
    behind. An endpoint's error ends the stream with that error."""
    endpoints = list(info.endpoints)
    if len(endpoints) == 1 and not endpoints[0].locations:
        # Batch by batch from Python, so that a failure keeps its Flight error class
        # (FlightStreamReader.to_reader() turns them all into OSError).
        stream = connect(None).do_get(endpoints[0].ticket, options)
        return pa.RecordBatchReader.from_batches(stream.schema, (chunk.data for chunk in stream))
    batches: queue.Queue = queue.Queue(maxsize=2 * max(1, min(parallel, len(endpoints))))
    pending = queue.Queue()
    for endpoint in endpoints:
        pending.put(endpoint)
    stop = threading.Event()
    done = object()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fetch_one(endpoint) -> bool:
        """One endpoint's batches, from its first location that answers: a host gone
        since GetFlightInfo is skipped, unless it already sent some of the rows."""
        locations = [loc.uri.decode() for loc in endpoint.locations] or [None]
        for i, location in enumerate(locations):
            delivered = False
            try:
                for chunk in connect(location).do_get(endpoint.ticket, options):
                    delivered = True
                    if not offer(chunk.data):
                        return False
                return True
            except flight.FlightUnavailableError:
                if delivered or i == len(locations) - 1:
                    raise
        return True

    def fetch():
        try:
            while not stop.is_set():
                try:
                    endpoint = pending.get_nowait()
                except queue.Empty:
                    break
                if not fetch_one(endpoint):
                    return
        except BaseException as err:  # handed to the consumer, which raises it
            offer(err)
        finally:
            offer(done)

    workers = [threading.Thread(target=fetch, daemon=True) for _ in range(min(parallel, len(endpoints)))]
    for worker in workers:
        worker.start()

    def stream() -> Iterator[pa.RecordBatch]:
        finished = 0
        try:
            while finished < len(workers):
                item = batches.get()
                if item is done:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()

    return pa.RecordBatchReader.from_batches(info.schema, stream())


class Client:
    """Calls to one host. With `user` and `password` it authenticates once (Flight
    Handshake) and sends the bearer token it gets on every call; with `token` (a
    service token from `host tokens create`) it sends that."""

    def __init__(self, location: str, *, user: str | None = None, password: str | None = None,
                 token: str | None = None, tls_root_certs: bytes | None = None):
        kwargs = {"tls_root_certs": tls_root_certs} if tls_root_certs else {}
        self._connect_kwargs = kwargs
        self.flight = flight.FlightClient(location, **kwargs)
        self._hosts = {location: self.flight}
        self._hosts_lock = threading.Lock()
        headers = []
        if user is not None:
            headers.append(self.flight.authenticate_basic_token(user, password or ""))
        elif token is not None:
            headers.append((b"authorization", b"Bearer " + token.encode()))
        self.options = flight.FlightCallOptions(headers=headers)

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
        writer, reader = self.flight.do_put(descriptor, data.schema, self.options)
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
        return self.flight.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)), self.options)

    def host(self, location: str | None) -> flight.FlightClient:
        """A client for another host of the cluster (None: this one), kept for reuse;
        the same credentials are valid on every host sharing the warehouse."""
        if location is None:
            return self.flight
        with self._hosts_lock:
            if location not in self._hosts:
                self._hosts[location] = flight.FlightClient(location, **self._connect_kwargs)
            return self._hosts[location]

    def reader(self, command: dict, parallel: int = 8) -> pa.RecordBatchReader:
        """GetFlightInfo, then DoGet on every endpoint it returns, in parallel."""
        return endpoint_batches(self.info(command), self.host, self.options, parallel)

    def read(self, command: dict, parallel: int = 8) -> pa.Table:
        """The whole result of `command` (every endpoint, fetched in parallel)."""
        return self.reader(command, parallel).read_all()

    def get(self, command: dict) -> pa.Table:
        """DoGet with the command as the ticket, no planning round trip."""
        return self.flight.do_get(flight.Ticket(json.dumps(command).encode()), self.options).read_all()

    def action(self, name: str, body: dict | None = None):
        results = list(self.flight.do_action(flight.Action(name, json.dumps(body or {}).encode()), self.options))
        return json.loads(results[0].body.to_pybytes())

    def rows(self, table: str) -> int:
        return self.read({"sql": f"SELECT count(*) AS n FROM {table}"}).column("n")[0].as_py()
