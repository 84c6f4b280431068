"""Deterministic test data: every column type the acceptance names, each with nulls."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("amount", pa.float64()),
        ("price", pa.decimal128(12, 2)),
        ("name", pa.string()),
        ("day", pa.date32()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("flag", pa.bool_()),
    ]
)


def batch(start: int, rows: int, seed: int = 0) -> pa.RecordBatch:
    """Rows [start, start+rows): `id` is never null (it is the sort key); every
    other column is null on a different residue so nulls land everywhere."""
    rng = np.random.default_rng(seed * 1_000_003 + start)
    ids = np.arange(start, start + rows, dtype=np.int64)

    def nulls(k: int) -> np.ndarray:
        return (ids % k) == 0

    cents = rng.integers(-10_000_000_000, 10_000_000_000, rows)
    columns = [
        pa.array(ids),
        pa.array(rng.normal(100, 50, rows), mask=nulls(7)),
        decimal_cents(cents, nulls(11)),
        pa.array([f"name-{i % 997}" for i in ids], pa.string(), mask=nulls(13)),
        pa.array((ids % 3650).astype(np.int32), pa.int32(), mask=nulls(17)).cast(pa.date32()),
        pa.array(1_700_000_000_000_000 + ids * 1_000_003, pa.int64(), mask=nulls(19)).cast(pa.timestamp("us", tz="UTC")),
        pa.array(ids % 2 == 0, mask=nulls(23)),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def decimal_cents(cents: np.ndarray, mask: np.ndarray) -> pa.Array:
    """int64 cents as decimal(12, 2): the unscaled value, sign-extended to 128 bits."""
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    valid = pa.array(~mask).buffers()[1]
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [valid, pa.py_buffer(words.tobytes())])


def table(rows: int, batch_rows: int = 10_000, start: int = 0, seed: int = 0) -> pa.Table:
    return pa.Table.from_batches(
        [batch(s, min(batch_rows, start + rows - s), seed) for s in range(start, start + rows, batch_rows)], SCHEMA
    )


def reader(rows: int, batch_rows: int = 10_000, start: int = 0, seed: int = 0) -> pa.RecordBatchReader:
    """The same rows as `table`, generated lazily (for uploads larger than memory)."""
    batches = (batch(s, min(batch_rows, start + rows - s), seed) for s in range(start, start + rows, batch_rows))
    return pa.RecordBatchReader.from_batches(SCHEMA, batches)
