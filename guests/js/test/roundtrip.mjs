// For the SDK's test (tests/test_plugin_languages.py): decode an IPC stream with the
// JS Arrow layer, print its values as JSON, and write it back twice: columns as they
// arrived (raw) and re-encoded from their values, where the type allows.
//   node roundtrip.mjs IN.arrows RAW.arrows VALUES.arrows
import { readFileSync, writeFileSync } from 'node:fs';
import * as arrow from '../src/arrow.js';

const [input, raw, values] = process.argv.slice(2);
const batch = arrow.decodeBatch(new Uint8Array(readFileSync(input)));
const decoded = {};
const rebuilt = batch.columns.map((column) => {
  try {
    const list = column.toArray();
    decoded[column.field.name] = list.map((v) => (typeof v === 'bigint' ? v.toString() : v instanceof Date ? v.toISOString() : v));
    return arrow.Column.fromArray(column.field, list);
  } catch (err) {
    if (!(err instanceof arrow.ArrowError)) throw err;
    decoded[column.field.name] = { unsupported: err.message };
    return column;
  }
});
writeFileSync(raw, arrow.encodeBatch(batch));
writeFileSync(values, arrow.encodeBatch(new arrow.Batch(batch.schema, rebuilt, batch.numRows)));
console.log(JSON.stringify(decoded));
