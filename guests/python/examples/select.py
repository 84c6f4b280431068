"""select: keep, drop and rename columns (the Rust `select`'s arguments and answers).

Args: {"columns": ["id", "price_*"], "drop": ["*_internal"], "rename": {"old": "new"}},
every key optional. Columns pass through as they arrived: nothing is decoded.
"""
import re

from floe_plugin import Batch, InvalidArgs, Plugin, Schema, UnsupportedSchema, export


def matches(pattern: str, names: list[str]) -> list[int]:
    """The indices of the columns a name or a glob (* and ?) selects, in table order."""
    if "*" not in pattern and "?" not in pattern:
        if pattern not in names:
            raise UnsupportedSchema(f"no column {pattern!r} (columns: {', '.join(names)})")
        return [names.index(pattern)]
    regex = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")
    return [i for i, name in enumerate(names) if regex.match(name)]


class Select(Plugin):
    name = "select"
    description = "Keep, drop and rename columns (names or globs with * and ?)."
    stateless = True
    args_schema = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "drop": {"type": "array", "items": {"type": "string"}},
            "rename": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }

    def __init__(self, schema: Schema, args: dict):
        names = schema.names
        kept = list(range(len(names)))
        if "columns" in args:
            kept = []
            for pattern in args["columns"]:
                kept += [i for i in matches(pattern, names) if i not in kept]
        for pattern in args.get("drop", []):
            dropped = matches(pattern, names)
            kept = [i for i in kept if i not in dropped]
        if not kept:
            raise InvalidArgs("the selection keeps no columns: name at least one")
        rename = args.get("rename", {})
        for old in rename:
            if old not in (names[i] for i in kept):
                raise UnsupportedSchema(f"cannot rename {old!r}: not among the selected columns")
        self.needed = sorted(kept)  # process() receives these, in table order
        self.positions = [self.needed.index(i) for i in kept]
        self.names = [rename.get(names[i], names[i]) for i in kept]
        self.schema = Schema(tuple(schema.fields[i].with_name(n) for i, n in zip(kept, self.names)), schema.metadata)
        self.input_names = [names[i] for i in self.needed]

    def output_schema(self) -> Schema:
        return self.schema

    def input_columns(self) -> list[str]:
        return self.input_names

    def process(self, batch: Batch) -> Batch:
        columns = [batch.columns[p].renamed(n) for p, n in zip(self.positions, self.names)]
        return Batch(self.schema, columns, batch.num_rows)


export(Select)
