"""filter: keep the rows where every condition holds.

Args: {"where": [["amount", ">", 120], ["name", "in", ["a", "b"]], ["flag", "is not null"]]}.
Operators: = != < <= > >= in, not in, is null, is not null. A null value never
satisfies a comparison (as in SQL). Dates and timestamps compare with ISO strings.
Only the columns named cross into the plugin; the host drops the rows.
"""
import datetime as dt
import operator

from floe_plugin import Batch, InvalidArgs, RowFilter, Schema, UnsupportedSchema, export
from floe_plugin.arrow import DATE, TIMESTAMP

COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
           ">": operator.gt, ">=": operator.ge}


def literal(field, value):
    """A JSON value as the column's values are (dates and timestamps from ISO text)."""
    if field.type.id == DATE:
        return dt.date.fromisoformat(value)
    if field.type.id == TIMESTAMP:
        ts = dt.datetime.fromisoformat(value)
        return ts.replace(tzinfo=ts.tzinfo or dt.timezone.utc) if field.type.get("timezone") else ts
    return value


def condition(schema: Schema, column: str, op: str, *value):
    if column not in schema.names:
        raise UnsupportedSchema(f"no column {column!r} (columns: {', '.join(schema.names)})")
    field = schema.field(column)
    if op in ("is null", "is not null") and not value:
        return lambda v, want=(op == "is null"): (v is None) == want
    if op in COMPARE and len(value) == 1:
        test, other = COMPARE[op], literal(field, value[0])
        return lambda v: v is not None and test(v, other)
    if op in ("in", "not in") and len(value) == 1 and isinstance(value[0], list):
        options, want = {literal(field, x) for x in value[0]}, op == "in"
        return lambda v: v is not None and (v in options) == want
    raise InvalidArgs(f"cannot read condition {[column, op, *value]!r}: expected [column, op, value] "
                      f"with op one of {', '.join([*COMPARE, 'in', 'not in'])}, or [column, 'is [not] null']")


class Filter(RowFilter):
    name = "filter"
    description = "Keep rows where every [column, op, value] condition holds."
    stateless = True
    args_schema = {
        "type": "object",
        "properties": {"where": {"type": "array", "items": {"type": "array"}}},
        "required": ["where"],
        "additionalProperties": False,
    }

    def __init__(self, schema: Schema, args: dict):
        self.tests, self.names = [], []
        for cond in args["where"]:
            if not isinstance(cond, list) or len(cond) < 2:
                raise InvalidArgs(f"a condition is [column, op, value], not {cond!r}")
            self.tests.append((cond[0], condition(schema, *cond)))
            self.names += [cond[0]] if cond[0] not in self.names else []

    def columns(self) -> list[str]:
        return self.names

    def keep(self, batch: Batch) -> list[bool]:
        keep = [True] * batch.num_rows
        for column, test in self.tests:
            values = batch.column(column).to_list()
            keep = [k and test(v) for k, v in zip(keep, values)]
        return keep


export(Filter)
