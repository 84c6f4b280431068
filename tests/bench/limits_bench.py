"""What the host's bounds cost and hold, measured against the real host.

    .venv/bin/python tests/bench/limits_bench.py --rows 6000000

- cancel:   the cross-join SQL with a 3 s client deadline; the host's CPU seconds
            in the 2 s after the deadline (idle is ~0).
- memory:   50 concurrent DoGets of a `--rows` lineitem table with
            --duckdb-memory-limit; the host's peak RSS while they run, and its RSS
            60 s after they end beside a fresh host's.
- hostile:  p50/p99 of 100-row filtered reads on an idle host, then with 20 plugin
            calls spinning (hostile loop) in flight.
- refusals: latency of the oversized / empty inputs the host must refuse up front.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from floe_client import HOST_BIN, TARGET_DIR, Client, Host  # noqa: E402
from plugins_bench import lineitem  # noqa: E402

GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"
CROSS_JOIN = "SELECT count(*) AS n FROM range(100000) a, range(1000000) b WHERE a.range + b.range = -1"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get(client: Client, command: dict, timeout: float | None = None) -> pa.Table:
    opts = flight.FlightCallOptions(timeout=timeout) if timeout else flight.FlightCallOptions()
    return client.flight.do_get(flight.Ticket(json.dumps(command).encode()), opts).read_all()


def load(client: Client, table: str, rows: int) -> None:
    batch = 500_000
    reader = pa.RecordBatchReader.from_batches(
        lineitem(0, 1).schema, (lineitem(s, min(batch, rows - s)) for s in range(0, rows, batch))
    )
    client.put({"table": table, "mode": "overwrite"}, reader)


def cancel(work: Path) -> None:
    with Host(work / "cancel") as host:
        client = Client(host.location)
        before = cpu_seconds(host.proc.pid)
        try:
            get(client, {"sql": CROSS_JOIN}, timeout=3)
        except flight.FlightTimedOutError:
            pass
        at_deadline = cpu_seconds(host.proc.pid)
        time.sleep(2)
        after = cpu_seconds(host.proc.pid)
        print(f"cancel: {at_deadline - before:.2f} CPU-s until the 3 s deadline, "
              f"{after - at_deadline:.2f} CPU-s in the 2 s after it")


def memory(work: Path, rows: int, limit: str, clients: int) -> None:
    with Host(work / "memory", "--duckdb-memory-limit", limit) as host:
        client = Client(host.location)
        load(client, "m.lineitem", rows)
        time.sleep(5)
        fresh = rss_mib(host.proc.pid)
        peak = fresh
        done = threading.Event()

        def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mib(host.proc.pid))
                time.sleep(0.05)

        outcomes: list[str] = []

        def read():
            try:
                table = get(Client(host.location), {"table": "m.lineitem"})
                outcomes.append("ok" if table.num_rows == rows else f"{table.num_rows} rows")
            except pa.ArrowException as err:
                outcomes.append(type(err).__name__)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        readers = [threading.Thread(target=read) for _ in range(clients)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
        time.sleep(60)
        idle = rss_mib(host.proc.pid)
        counts = {o: outcomes.count(o) for o in set(outcomes)}
        print(f"memory: {clients} concurrent full reads of {rows:,} rows in {elapsed:.1f} s ({counts}); "
              f"limit {limit}; RSS fresh (after load) {fresh:.0f} MiB, peak {peak:.0f} MiB, "
              f"60 s after {idle:.0f} MiB")


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    return f"p50 {statistics.median(samples) * 1000:.1f} ms, p99 {samples[int(len(samples) * 0.99) - 1] * 1000:.1f} ms"


def hostile(work: Path, reads: int, spinners: int) -> None:
    warehouse = work / "hostile" / "warehouse"
    subprocess.run([str(HOST_BIN), "plugins", "add", "hostile", str(GUESTS / "hostile.wasm"), "-w", str(warehouse)],
                   check=True, capture_output=True)
    with Host(warehouse) as host:
        client = Client(host.location)
        load(client, "h.lineitem", 100_000)
        command = {"table": "h.lineitem", "filter": "l_orderkey < 25"}

        def timed(n: int) -> list[float]:
            out = []
            for _ in range(n):
                started = time.perf_counter()
                assert get(client, command).num_rows == 100
                out.append(time.perf_counter() - started)
            return out

        timed(20)
        idle = timed(reads)
        stop = threading.Event()
        refused = []

        def spin():
            c = Client(host.location)
            while not stop.is_set():
                try:
                    get(c, {"table": "h.lineitem", "transforms": [{"plugin": "hostile", "args": {"mode": "loop"}}]})
                except pa.ArrowException as err:
                    refused.append(type(err).__name__)

        threads = [threading.Thread(target=spin) for _ in range(spinners)]
        for t in threads:
            t.start()
        time.sleep(2)
        busy = timed(reads)
        stop.set()
        for t in threads:
            t.join()
        kinds = {k: refused.count(k) for k in set(refused)}
        print(f"hostile: 100-row reads idle {percentiles(idle)}; with {spinners} spinning plugin calls "
              f"{percentiles(busy)} (ratio of p50s {statistics.median(busy) / statistics.median(idle):.2f}); "
              f"spinner outcomes {kinds}")


def refusals(work: Path) -> None:
    with Host(work / "refusals") as host:
        client = Client(host.location)
        client.put({"table": "r.t"}, pa.table({"id": [1, 2, 3]}))
        cases = {
            "1 MiB+ command": {"sql": "SELECT 1", "pad": "x" * (1 << 20)},
            "1,000,000 columns": {"table": "r.t", "columns": ["id"] * 1_000_000},
            "10,001 columns": {"table": "r.t", "columns": ["id"] * 10_001},
            "100,000-char table name": {"table": "t" * 100_000},
        }
        for name, command in cases.items():
            times = []
            descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
            for _ in range(5):
                started = time.perf_counter()
                try:
                    client.flight.get_flight_info(descriptor)
                except pa.ArrowException as err:
                    message = str(err)
                times.append(time.perf_counter() - started)
            print(f"refusals: {name}: median {statistics.median(times) * 1000:.1f} ms, "
                  f"message {len(message)} chars: {message[:90]!r}")
        times = []
        for _ in range(5):
            started = time.perf_counter()
            try:
                client.put({"table": "r.none"}, pa.table({"x": [1]}).select([]))
            except pa.ArrowException as err:
                message = str(err)
            times.append(time.perf_counter() - started)
        print(f"refusals: zero columns: median {statistics.median(times) * 1000:.1f} ms: {message[:90]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6_000_000)
    parser.add_argument("--memory-limit", default="2GiB")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--only", choices=["cancel", "memory", "hostile", "refusals"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "cancel"):
            cancel(work)
        if args.only in (None, "refusals"):
            refusals(work)
        if args.only in (None, "hostile"):
            hostile(work, args.reads, 20)
        if args.only in (None, "memory"):
            memory(work, args.rows, args.memory_limit, args.clients)


if __name__ == "__main__":
    main()
