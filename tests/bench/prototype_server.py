"""BASELINE, not floe: the Python prototype's stack, rebuilt for the benchmarks.

A pyarrow Flight server as the prototype had it: each upload is read whole
(`read_all`) and appended with pyiceberg (SqlCatalog, SQLite); each read runs DuckDB's
iceberg extension (`iceberg_scan` of the table's metadata) and returns the whole table;
one lock around every call. Tickets are JSON `{"table": "ns.name"}` here (the prototype
unpickled them; parsing either costs nothing next to the work). It could not select
columns or filter: clients did that themselves.

    python tests/bench/prototype_server.py --warehouse DIR --port PORT
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
    def __init__(self, location: str, warehouse: Path):
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

    def get_flight_info(self, context, descriptor):
        with self.lock:
            table = self._scan(json.loads(descriptor.command)["table"])
        return flight.FlightInfo(table.schema, descriptor, [flight.FlightEndpoint(descriptor.command, [])],
                                 table.num_rows, table.nbytes)

    def do_get(self, context, ticket):
        with self.lock:
            table = self._scan(json.loads(ticket.ticket)["table"])
        return flight.RecordBatchStream(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = PrototypeServer(f"grpc://127.0.0.1:{args.port}", args.warehouse)
    server.serve()


if __name__ == "__main__":
    main()
