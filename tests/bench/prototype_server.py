"""BASELINE, not floe: the Python prototype's stack, rebuilt for the benchmarks.

A pyarrow Flight server as the prototype had it: each upload is read whole
(`read_all`) and appended with pyiceberg (SqlCatalog, SQLite); each read runs DuckDB's
iceberg extension (`iceberg_scan` of the table's metadata) and returns the whole table;
one lock around every call. Tickets are JSON `{"table": "ns.name"}` here (the prototype
unpickled them; parsing either costs nothing next to the work). It could not select
columns or filter: clients did that themselves.

With `--pushdown` it is the strongest fair version of that stack: tickets may also carry
`columns`, `filter` and `limit`, which go into its DuckDB query (the change its authors
would have made first), GetFlightInfo only describes the query (`LIMIT 0`) instead of
running it, and reads run on a DuckDB cursor of their own, outside the lock (which
still serializes the pyiceberg appends).

    python tests/bench/prototype_server.py --warehouse DIR --port PORT [--pushdown]
"""
import argparse
import json
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.flight as flight
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError


class PrototypeServer(flight.FlightServerBase):
    def __init__(self, location: str, warehouse: Path, pushdown: bool = False):
        self.pushdown = pushdown
        warehouse.mkdir(parents=True, exist_ok=True)
        self.catalog = SqlCatalog("prototype", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
        self.duck = duckdb.connect()
        self.duck.sql("LOAD iceberg")
        self.lock = threading.Lock()
        super().__init__(location)  # starts accepting calls: everything above must be ready

    def _table(self, name: str):
        return self.catalog.load_table(name)

    def do_put(self, context, descriptor, reader, writer):
        name = json.loads(descriptor.command)["table"]
        with self.lock:
            data = reader.read_all()
            namespace = name.split(".")[0]
            self.catalog.create_namespace_if_not_exists(namespace)
            try:
                table = self._table(name)
            except NoSuchTableError:
                table = self.catalog.create_table(name, schema=data.schema)
            table.append(data)

    def _scan(self, name: str) -> pa.Table:
        metadata = self._table(name).metadata_location
        return self.duck.sql(f"SELECT * FROM iceberg_scan('{metadata}')").arrow().read_all()

    def _query(self, command: bytes) -> str:
        """The pushdown mode's query: the ticket's columns, filter and limit in DuckDB's SQL."""
        read = json.loads(command)
        columns = ", ".join(f'"{c}"' for c in read["columns"]) if read.get("columns") else "*"
        metadata = self._table(read["table"]).metadata_location
        sql = f"SELECT {columns} FROM iceberg_scan('{metadata}')"
        if read.get("filter"):
            sql += f" WHERE {read['filter']}"
        if read.get("limit") is not None:
            sql += f" LIMIT {int(read['limit'])}"
        return sql

    def get_flight_info(self, context, descriptor):
        if self.pushdown:
            schema = self.duck.cursor().sql(f"SELECT * FROM ({self._query(descriptor.command)}) LIMIT 0").arrow().schema
            return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(descriptor.command, [])], -1, -1)
        with self.lock:
            table = self._scan(json.loads(descriptor.command)["table"])
        return flight.FlightInfo(table.schema, descriptor, [flight.FlightEndpoint(descriptor.command, [])],
                                 table.num_rows, table.nbytes)

    def do_get(self, context, ticket):
        if self.pushdown:
            reader = self.duck.cursor().sql(self._query(ticket.ticket)).arrow()
            return flight.RecordBatchStream(reader)
        with self.lock:
            table = self._scan(json.loads(ticket.ticket)["table"])
        return flight.RecordBatchStream(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pushdown", action="store_true", help="push columns/filter/limit into DuckDB")
    args = parser.parse_args()
    server = PrototypeServer(f"grpc://127.0.0.1:{args.port}", args.warehouse, args.pushdown)
    server.serve()


if __name__ == "__main__":
    main()
