// mask: hide the values of some columns (the Rust `mask`'s arguments and answers).
//
// Args: {"columns": ["email"], "salt": "s3cret", "mode": "sha256" | "redact"}.
// sha256 replaces each value with the hex SHA-256 of salt + the value as text, so
// equal values stay equal; redact writes "REDACTED". Masked columns become strings,
// nulls stay null, and the other columns pass through undecoded.
import { Batch, Column, Field, Plugin, Schema, UnsupportedSchema, arrow, exportPlugin, sha256Hex } from 'floe-plugin';

const asText = (value) => (value instanceof Date ? value.toISOString().slice(0, 10) : String(value));

class Mask extends Plugin {
  static name = 'mask';
  static description = "Replace the listed columns' values with a salted SHA-256 hex digest or a redaction.";
  static stateless = true;
  static argsSchema = {
    type: 'object',
    properties: {
      columns: { type: 'array', items: { type: 'string' } },
      salt: { type: 'string', default: '' },
      mode: { enum: ['sha256', 'redact'], default: 'sha256' },
    },
    required: ['columns'],
    additionalProperties: false,
  };

  constructor(schema, args) {
    super(schema, args);
    for (const name of args.columns) {
      if (!schema.names.includes(name)) throw new UnsupportedSchema(`no column "${name}" to mask`);
    }
    this.masked = new Set(args.columns);
    this.salt = args.salt ?? '';
    this.redact = args.mode === 'redact';
    this.schema = new Schema(
      schema.fields.map((f) => (this.masked.has(f.name) ? new Field(f.name, arrow.utf8(), f.nullable) : f)),
      schema.metadata,
    );
  }

  outputSchema() { return this.schema; }

  hide(value) {
    return this.redact ? 'REDACTED' : sha256Hex(this.salt + asText(value));
  }

  process(batch) {
    const columns = batch.columns.map((column, i) =>
      this.masked.has(column.field.name)
        ? Column.fromArray(this.schema.fields[i], column.toArray().map((v) => (v === null ? null : this.hide(v))))
        : column);
    return new Batch(this.schema, columns, batch.numRows);
  }
}

exportPlugin(Mask);
