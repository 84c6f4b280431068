"""Deterministic demo data for the dbt example: customers, orders, payments."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

COUNTRIES = ["NL", "BE", "DE", "FR", "US"]
STATUSES = ["completed", "completed", "completed", "shipped", "returned"]
METHODS = ["card", "cash", "voucher", "transfer"]


def customers(n: int = 20_000) -> pa.Table:
    rng = np.random.default_rng(1)
    ids = np.arange(1, n + 1, dtype=np.int64)
    return pa.table({
        "customer_id": ids,
        "name": [f"Customer {i}" for i in ids],
        "email": [f"customer{i}@example.com" for i in ids],
        "country": np.array(COUNTRIES, dtype=object)[rng.integers(0, len(COUNTRIES), n)],
        "signup_date": pa.array(rng.integers(17_000, 20_000, n).astype(np.int32)).cast(pa.date32()),
    })


def orders(start: int, n: int, customers: int = 20_000, days: tuple[int, int] = (19_000, 20_000)) -> pa.Table:
    """Orders start+1 .. start+n (loaded in more than one upload, to make snapshots),
    dated in `days` (days since 1970-01-01, end excluded)."""
    rng = np.random.default_rng(1000 + start)
    ids = np.arange(start + 1, start + n + 1, dtype=np.int64)
    return pa.table({
        "order_id": ids,
        "customer_id": rng.integers(1, customers + 1, n).astype(np.int64),
        "order_date": pa.array(rng.integers(*days, n).astype(np.int32)).cast(pa.date32()),
        "status": np.array(STATUSES, dtype=object)[ids % len(STATUSES)],
        "amount_cents": rng.integers(500, 50_000, n).astype(np.int64),
    })


def payments(orders_total: int, n: int = 180_000) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table({
        "payment_id": np.arange(1, n + 1, dtype=np.int64),
        "order_id": rng.integers(1, orders_total + 1, n).astype(np.int64),
        "method": np.array(METHODS, dtype=object)[rng.integers(0, len(METHODS), n)],
        "amount_cents": rng.integers(100, 50_000, n).astype(np.int64),
    })
