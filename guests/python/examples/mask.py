"""mask: hide the values of some columns (the Rust `mask`'s arguments and answers).

Args: {"columns": ["email"], "salt": "s3cret", "mode": "sha256" | "redact"}.
sha256 replaces each value with the hex SHA-256 of salt + the value as text, so equal
values stay equal; redact writes "REDACTED". Masked columns become strings, nulls
stay null, and the other columns pass through undecoded.
"""
import hashlib

from floe_plugin import Batch, Column, Field, Plugin, Schema, UnsupportedSchema, export
from floe_plugin.arrow import utf8


def as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class Mask(Plugin):
    name = "mask"
    description = "Replace the listed columns' values with a salted SHA-256 hex digest or a redaction."
    stateless = True
    args_schema = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "salt": {"type": "string", "default": ""},
            "mode": {"enum": ["sha256", "redact"], "default": "sha256"},
        },
        "required": ["columns"],
        "additionalProperties": False,
    }

    def __init__(self, schema: Schema, args: dict):
        for name in args["columns"]:
            if name not in schema.names:
                raise UnsupportedSchema(f"no column {name!r} to mask")
        self.masked = set(args["columns"])
        self.salt = args.get("salt", "").encode()
        self.redact = args.get("mode", "sha256") == "redact"
        self.schema = Schema(tuple(Field(f.name, utf8(), f.nullable) if f.name in self.masked else f
                                   for f in schema.fields), schema.metadata)

    def output_schema(self) -> Schema:
        return self.schema

    def hide(self, value) -> str:
        if self.redact:
            return "REDACTED"
        return hashlib.sha256(self.salt + as_text(value).encode()).hexdigest()

    def process(self, batch: Batch) -> Batch:
        columns = [
            Column.from_list(out, [None if v is None else self.hide(v) for v in column.to_list()])
            if column.field.name in self.masked else column
            for column, out in zip(batch.columns, self.schema.fields)
        ]
        return Batch(self.schema, columns, batch.num_rows)


export(Mask)
