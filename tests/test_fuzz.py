"""A bounded, seeded fuzz smoke against the real host: a few thousand generated
read commands, filters, SQL, tickets, actions and uploads. It fails on a crash, a
hang past the request's deadline, an Internal status, or a read of one table
that returns another table's rows."""
from __future__ import annotations

import json
import random
import string

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from floe_client import Client, Host

SEED = 20261202
DEADLINE = 20  # seconds per request: far above any answer, so a timeout is a hang
TABLES = {"fz.a": "a", "fz.b": "b"}
COLUMNS = ["id", "tag", "amount", "name", "day"]
TOKENS = [
    *COLUMNS, "1", "0", "-1", "2.5", "1e308", "NULL", "TRUE", "'a'", "'b'", "'%'", "''", "'\\'", "DATE '2024-01-01'",
    "=", "<>", "<", ">=", "+", "-", "*", "/", "%", "||", "AND", "OR", "NOT", "IS", "IN", "BETWEEN", "LIKE", "ILIKE",
    "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "AS", "::", "INTEGER", "VARCHAR", "(", ")", ",", ";", "--", "/*",
    "*/", '"id"', '"', "SELECT", "FROM", "fz.b", "UNION", "read_parquet('/etc/passwd')", "abs", "length", "upper",
    "pg_sleep(0.01)", "duckdb_settings()", "current_setting('threads')", "getenv('HOME')", "?", "$1", "[1, 2]",
    "{'x': 1}", "lambda", "->", "x", "\x00", "é", "🦆",
]
ACTIONS = ["healthcheck", "list_tables", "get_schema", "drop_table", "list_plugins", "compact_table",
           "list_snapshots", "nope", ""]


def junk(rng: random.Random) -> object:
    """A JSON value of any type, sometimes large or odd."""
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, -(2**63) - 1, 10**30, 1.5, float("1e308")])
    if kind == 3:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 40)))
    if kind == 4:
        return [junk(rng) for _ in range(rng.randrange(0, 4))]
    if kind == 5:
        return {rng.choice(["table", "sql", "x", "columns"]): junk(rng) for _ in range(rng.randrange(0, 3))}
    if kind == 6:
        return rng.choice(list(TABLES) + ["fz", "fz.c", "a.b.c", "", "../fz.a", "fz.a;", "FZ.A"])
    if kind == 7:
        return rng.choice(COLUMNS)
    return "x" * rng.choice([1, 300, 5000])


def expression(rng: random.Random) -> str:
    return " ".join(rng.choice(TOKENS) for _ in range(rng.randrange(1, 9)))


def read_command(rng: random.Random) -> dict:
    command: dict = {"table": rng.choice(list(TABLES))}
    if rng.random() < 0.5:
        command["columns"] = rng.sample(COLUMNS, rng.randrange(0, len(COLUMNS) + 1))
    if rng.random() < 0.6:
        command["filter"] = expression(rng)
    if rng.random() < 0.3:
        command["limit"] = rng.choice([0, 1, 5, -1, 2**64])
    if rng.random() < 0.1:
        command[rng.choice(["snapshot_id", "as_of"])] = junk(rng)
    if rng.random() < 0.1:
        command["transforms"] = [{"plugin": junk(rng), "args": junk(rng)}]
    if rng.random() < 0.2:  # mutate one field into anything
        command[rng.choice(["table", "columns", "filter", "limit", "extra"])] = junk(rng)
    return command


def sql_command(rng: random.Random) -> dict:
    return {"sql": f"SELECT {expression(rng)} FROM {rng.choice(list(TABLES))} {expression(rng)}"}


def ticket_bytes(rng: random.Random) -> bytes:
    text = json.dumps(read_command(rng)).encode()
    choice = rng.randrange(4)
    if choice == 0:
        return text[: rng.randrange(len(text) + 1)]
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    if choice == 2:
        return json.dumps(junk(rng)).encode()
    return text


UPLOAD_TYPES = [pa.int8(), pa.int64(), pa.uint64(), pa.float16(), pa.float64(), pa.string(), pa.large_string(),
                pa.binary(), pa.bool_(), pa.date32(), pa.timestamp("ns"), pa.time64("us"), pa.decimal128(38, 10),
                pa.duration("s"), pa.list_(pa.int32()), pa.struct([("x", pa.int32())]), pa.null(),
                pa.dictionary(pa.int32(), pa.string()), pa.map_(pa.string(), pa.int64())]


def upload(rng: random.Random) -> tuple[dict, pa.Table]:
    names = rng.sample(["id", "tag", "x", "", "é", "a b", "ID", "id"], rng.randrange(0, 4))
    arrays = []
    rows = rng.randrange(0, 5)
    for _ in names:
        kind = rng.choice(UPLOAD_TYPES)
        arrays.append(pa.nulls(rows, kind) if rng.random() < 0.5 else pa.array([None] * rows, kind))
    table = pa.Table.from_arrays(arrays, names=names) if names else pa.table({"x": [1]}).select([])
    command: dict = {"table": rng.choice(["fz.up", "fz.up2", junk(rng)])}
    if rng.random() < 0.5:
        command["mode"] = rng.choice(["append", "overwrite", "create", "error_if_exists", "upsert", junk(rng)])
    if rng.random() < 0.3:
        command["target"] = rng.choice(["iceberg", "duckdb", junk(rng)])
    if rng.random() < 0.2:
        command["expect_rows"] = rng.choice([0, rows, rows + 1, -1, junk(rng)])
    return command, table


class Outcomes:
    def __init__(self):
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    def run(self, what: str, request, check=None) -> None:
        try:
            result = request()
        except (flight.FlightInternalError, flight.FlightTimedOutError, flight.FlightUnavailableError) as err:
            self.failures.append(f"{what}: {type(err).__name__}: {str(err)[:300]}")
            return
        except (flight.FlightError, pa.ArrowException) as err:
            self.counts[type(err).__name__] = self.counts.get(type(err).__name__, 0) + 1
            return
        self.counts["ok"] = self.counts.get("ok", 0) + 1
        if check is not None:
            problem = check(result)
            if problem:
                self.failures.append(f"{what}: {problem}")


def rows_of_its_table(command: dict):
    table = command.get("table")
    expected = TABLES.get(table) if isinstance(table, str) else None

    def check(table: pa.Table) -> str | None:
        if expected and "tag" in table.column_names:
            tags = set(table.column("tag").to_pylist()) - {None}
            if tags - {expected}:
                return f"read of {command['table']} returned rows tagged {sorted(tags)}"
        return None

    return check


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with Host(tmp_path_factory.mktemp("fuzz") / "warehouse", "--request-timeout", str(DEADLINE - 5)) as host:
        c = Client(host.location)
        for name, tag in TABLES.items():
            n = 200
            c.put({"table": name, "mode": "overwrite"}, pa.table({
                "id": pa.array(range(n), pa.int64()),
                "tag": [tag] * n,
                "amount": [i * 1.5 for i in range(n)],
                "name": [f"n{i % 7}" for i in range(n)],
                "day": pa.array([19000 + i for i in range(n)], pa.int32()).cast(pa.date32()),
            }))
        yield c
        assert c.action("healthcheck")["status"] == "ok"


def test_generated_requests_get_honest_answers(client):
    rng = random.Random(SEED)
    outcomes = Outcomes()
    opts = flight.FlightCallOptions(timeout=DEADLINE)
    for i in range(2500):
        command = read_command(rng) if rng.random() < 0.75 else sql_command(rng)
        descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
        outcomes.run(f"GetFlightInfo {command}", lambda: client.flight.get_flight_info(descriptor, opts))
        outcomes.run(
            f"DoGet {command}",
            lambda: client.flight.do_get(flight.Ticket(json.dumps(command).encode()), opts).read_all(),
            rows_of_its_table(command),
        )
    for i in range(800):
        ticket = ticket_bytes(rng)
        outcomes.run(f"DoGet {ticket[:200]!r}", lambda: client.flight.do_get(flight.Ticket(ticket), opts).read_all())
    for i in range(600):
        name = rng.choice(ACTIONS)
        body = json.dumps(junk(rng) if rng.random() < 0.5 else {"table": junk(rng)}).encode()
        if name == "drop_table" and (b"fz.a" in body or b"fz.b" in body):
            continue  # keep the tables the reads check against
        outcomes.run(f"action {name} {body[:200]!r}",
                     lambda: list(client.flight.do_action(flight.Action(name, body), opts)))
    for i in range(400):
        command, table = upload(rng)

        def put():
            writer, reader = client.flight.do_put(
                flight.FlightDescriptor.for_command(json.dumps(command)), table.schema, opts)
            writer.write_table(table)
            writer.done_writing()
            reader.read()
            writer.close()

        outcomes.run(f"DoPut {command} {table.schema}", put)
    print(outcomes.counts)
    assert not outcomes.failures, "\n".join(outcomes.failures[:20])
    assert outcomes.counts.get("ok", 0) > 300, outcomes.counts  # the generator is not all noise
