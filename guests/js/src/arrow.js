// A small Arrow for plugins: schemas, columns and batches, read from and written to
// the IPC stream bytes the host exchanges with a guest.
//
// A column is kept as the bytes it arrived in until a plugin asks for its values, so
// selecting, reordering or renaming columns never decodes them. Values decode to and
// encode from arrays for int (64-bit as BigInt), float, bool, utf8/large utf8, date
// (Date at midnight UTC) and timestamp (BigInt ticks of the column's unit), with null
// for nulls.
import { Table, build } from './flatbuf.js';

// Type ids of the Arrow flatbuffer schema (Schema.fbs `Type` union).
export const NULL = 1, INT = 2, FLOAT = 3, BINARY = 4, UTF8 = 5, BOOL = 6, DECIMAL = 7, DATE = 8, TIME = 9,
  TIMESTAMP = 10, INTERVAL = 11, LIST = 12, STRUCT = 13, FIXED_BINARY = 15, FIXED_LIST = 16, MAP = 17,
  DURATION = 18, LARGE_BINARY = 19, LARGE_UTF8 = 20, LARGE_LIST = 21;

// Each type's table fields: [slot, kind, name, default].
const PARAMS = {
  [INT]: [[0, 'i32', 'bitWidth', 0], [1, 'bool', 'signed', false]],
  [FLOAT]: [[0, 'i16', 'precision', 0]],
  [DECIMAL]: [[0, 'i32', 'precision', 0], [1, 'i32', 'scale', 0], [2, 'i32', 'bitWidth', 128]],
  [DATE]: [[0, 'i16', 'unit', 1]],
  [TIME]: [[0, 'i16', 'unit', 1], [1, 'i32', 'bitWidth', 32]],
  [TIMESTAMP]: [[0, 'i16', 'unit', 0], [1, 'str', 'timezone', null]],
  [INTERVAL]: [[0, 'i16', 'unit', 0]],
  [FIXED_BINARY]: [[0, 'i32', 'byteWidth', 0]],
  [FIXED_LIST]: [[0, 'i32', 'listSize', 0]],
  [MAP]: [[0, 'bool', 'keysSorted', false]],
  [DURATION]: [[0, 'i16', 'unit', 1]],
};
// How many buffers a column of each type has in IPC (children add theirs).
const BUFFERS = { [NULL]: 0, [BINARY]: 3, [UTF8]: 3, [LARGE_BINARY]: 3, [LARGE_UTF8]: 3, [LIST]: 2, [LARGE_LIST]: 2,
  [MAP]: 2, [FIXED_LIST]: 1, [STRUCT]: 1 };
const FIXED = new Set([INT, FLOAT, BOOL, DECIMAL, DATE, TIME, TIMESTAMP, INTERVAL, FIXED_BINARY, DURATION]);
const NAMES = { 1: 'null', 2: 'int', 3: 'float', 4: 'binary', 5: 'utf8', 6: 'bool', 7: 'decimal', 8: 'date',
  9: 'time', 10: 'timestamp', 11: 'interval', 12: 'list', 13: 'struct', 15: 'fixed_size_binary',
  16: 'fixed_size_list', 17: 'map', 18: 'duration', 19: 'large_binary', 20: 'large_utf8', 21: 'large_list' };
const DAY_MS = 86_400_000;

export class ArrowError extends Error {}

/** A type: its id and the parameters of its table (bitWidth, unit, timezone, ...). */
export class Type {
  constructor(id, params = {}) {
    this.id = id;
    this.params = Object.fromEntries((PARAMS[id] ?? []).map(([, , name, fallback]) => [name, params[name] ?? fallback]));
  }
  toString() {
    const args = Object.entries(this.params).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`).join(', ');
    return `${NAMES[this.id] ?? `type ${this.id}`}${args ? `(${args})` : ''}`;
  }
}

export const int64 = () => new Type(INT, { bitWidth: 64, signed: true });
export const float64 = () => new Type(FLOAT, { precision: 2 });
export const bool = () => new Type(BOOL);
export const utf8 = () => new Type(UTF8);

export class Field {
  constructor(name, type, nullable = true, children = [], metadata = []) {
    Object.assign(this, { name, type, nullable, children, metadata });
  }
  withName(name) { return new Field(name, this.type, this.nullable, this.children, this.metadata); }
}

export class Schema {
  constructor(fields, metadata = []) { this.fields = fields; this.metadata = metadata; }
  get names() { return this.fields.map((f) => f.name); }
  index(name) { return this.fields.findIndex((f) => f.name === name); }
  field(name) { return this.fields[this.index(name)]; }
}

/** One column: its field, the IPC nodes and buffers of it and its children (as they
 * arrived), and its decoded values once asked for. */
export class Column {
  constructor(field, nodes, buffers, values = null) {
    Object.assign(this, { field, nodes, buffers, values_: values });
  }
  get length() { return this.nodes[0][0]; }
  get nullCount() { return this.nodes[0][1]; }
  renamed(name) { return new Column(this.field.withName(name), this.nodes, this.buffers, this.values_); }
  toArray() {
    this.values_ ??= decode(this.field.type, this.length, this.nullCount, this.buffers);
    return this.values_;
  }
  static fromArray(field, values) {
    const [nodes, buffers] = encode(field.type, values);
    return new Column(field, nodes, buffers, values);
  }
}

export class Batch {
  constructor(schema, columns, numRows = columns.length ? columns[0].length : 0) {
    Object.assign(this, { schema, columns, numRows });
  }
  column(key) {
    const i = typeof key === 'number' ? key : this.schema.index(key);
    if (i < 0) throw new ArrowError(`no column ${JSON.stringify(key)}`);
    return this.columns[i];
  }
  static fromColumns(columns, metadata = []) {
    return new Batch(new Schema(columns.map((c) => c.field), metadata), columns);
  }
}

// --- IPC stream messages ---------------------------------------------------------

const SCHEMA = 1, RECORD_BATCH = 3;
const END = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

function* messages(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos + 8 <= bytes.length) {
    if (view.getUint32(pos, true) === 0xffffffff) pos += 4;
    const size = view.getInt32(pos, true);
    pos += 4;
    if (size === 0) return;
    const message = Table.root(bytes.subarray(pos, pos + size));
    pos += size;
    const bodyLength = message.scalar(3, 'i64');
    const body = bytes.subarray(pos, pos + bodyLength);
    pos += bodyLength;
    const header = message.table(2);
    if (!header) throw new ArrowError('an IPC message without a header');
    yield [header, message.scalar(1, 'u8'), body];
  }
}

export function decodeSchema(bytes) {
  for (const [header, kind] of messages(bytes)) if (kind === SCHEMA) return readSchema(header);
  throw new ArrowError('no schema message in the IPC stream');
}

/** The one record batch of an IPC stream (schema message, batch, end). */
export function decodeBatch(bytes) {
  let schema = null;
  for (const [header, kind, body] of messages(bytes)) {
    if (kind === SCHEMA) schema = readSchema(header);
    else if (kind === RECORD_BATCH) {
      if (!schema) throw new ArrowError('a record batch before its schema');
      return readBatch(schema, header, body);
    } else throw new ArrowError(`unsupported IPC message type ${kind} (dictionaries are not supported)`);
  }
  throw new ArrowError('no record batch in the IPC stream');
}

export function encodeSchema(schema) {
  return concat([message(SCHEMA, schemaTable(schema), 0), END]);
}

export function encodeBatch(batch) {
  const nodes = [], buffers = [], parts = [];
  let length = 0;
  for (const column of batch.columns) {
    nodes.push(...column.nodes);
    for (const buf of column.buffers) {
      buffers.push([length, buf.length]);
      parts.push(buf);
      length += buf.length;
      const pad = (8 - (length % 8)) % 8;
      if (pad) { parts.push(new Uint8Array(pad)); length += pad; }
    }
  }
  const header = [[0, ['i64', batch.numRows]], [1, ['pairs', nodes]], [2, ['pairs', buffers]]];
  return concat([message(SCHEMA, schemaTable(batch.schema), 0), message(RECORD_BATCH, header, length), ...parts, END]);
}

function message(kind, header, bodyLength) {
  const meta = build([[0, ['i16', 4]], [1, ['u8', kind]], [2, ['table', header]], [3, ['i64', bodyLength]]]);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setUint32(0, 0xffffffff, true);
  new DataView(prefix.buffer).setInt32(4, meta.length, true);
  return concat([prefix, meta]);
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

const schemaTable = (schema) => [[0, ['i16', 0]], [1, ['tables', schema.fields.map(fieldTable)]],
  [2, ['tables', schema.metadata.length ? metadataTables(schema.metadata) : null]]];

function fieldTable(f) {
  const typeFields = (PARAMS[f.type.id] ?? []).map(([slot, kind, name]) => [slot, [kind, f.type.params[name]]]);
  return [[0, ['str', f.name]], [1, ['bool', f.nullable]], [2, ['u8', f.type.id]], [3, ['table', typeFields]],
    [5, ['tables', f.children.map(fieldTable)]],
    [6, ['tables', f.metadata.length ? metadataTables(f.metadata) : null]]];
}

const metadataTables = (pairs) => pairs.map(([k, v]) => [[0, ['str', k]], [1, ['str', v]]]);

const readSchema = (header) => new Schema(header.tables(1).map(readField), readMetadata(header, 2));

function readField(t) {
  if (t.table(4)) throw new ArrowError(`column ${JSON.stringify(t.string(0))} is dictionary-encoded, which this SDK does not read`);
  const id = t.scalar(2, 'u8');
  const table = t.table(3);
  const params = {};
  for (const [slot, kind, name, fallback] of PARAMS[id] ?? []) {
    params[name] = !table ? fallback : kind === 'str' ? table.string(slot) : table.scalar(slot, kind, fallback);
  }
  return new Field(t.string(0) ?? '', new Type(id, params), t.scalar(1, 'bool', false), t.tables(5).map(readField),
    readMetadata(t, 6));
}

const readMetadata = (t, slot) => t.tables(slot).map((kv) => [kv.string(0), kv.string(1)]);

function readBatch(schema, header, body) {
  if (header.table(3)) throw new ArrowError('compressed IPC batches are not supported');
  const nodes = header.pairs(1);
  const buffers = header.pairs(2).map(([off, size]) => body.subarray(off, off + size));
  const columns = [];
  let n = 0, b = 0;
  for (const f of schema.fields) {
    const [nn, nb] = shape(f);
    columns.push(new Column(f, nodes.slice(n, n + nn), buffers.slice(b, b + nb)));
    n += nn;
    b += nb;
  }
  return new Batch(schema, columns, header.scalar(0, 'i64'));
}

/** The nodes and buffers a column of `f` spans. */
function shape(f) {
  let nodes = 1, buffers;
  if (FIXED.has(f.type.id)) buffers = 2;
  else if (f.type.id in BUFFERS) buffers = BUFFERS[f.type.id];
  else throw new ArrowError(`column ${JSON.stringify(f.name)} has type ${f.type}, which this SDK does not support`);
  for (const child of f.children) {
    const [cn, cb] = shape(child);
    nodes += cn;
    buffers += cb;
  }
  return [nodes, buffers];
}

/** Throw ArrowError naming the first column whose layout is not known. */
export function checkSupported(schema) { schema.fields.forEach(shape); }

// --- values ----------------------------------------------------------------------

function typed(buf, Kind, n) {
  // Buffers may sit at any offset of the message: copy when not aligned.
  const size = Kind.BYTES_PER_ELEMENT;
  if (buf.byteOffset % size === 0) return new Kind(buf.buffer, buf.byteOffset, n);
  return new Kind(buf.slice(0, n * size).buffer, 0, n);
}

function intKind(t) {
  const { bitWidth, signed } = t.params;
  return { 8: [Uint8Array, Int8Array], 16: [Uint16Array, Int16Array], 32: [Uint32Array, Int32Array],
    64: [BigUint64Array, BigInt64Array] }[bitWidth][signed ? 1 : 0];
}

// Plain loops: inside the component JS runs in an interpreter, where a callback
// per value (Array.from's, map's) costs as much as the work itself.
function decode(t, n, nullCount, buffers) {
  const values = new Array(n);
  switch (t.id) {
    case INT: case FLOAT: {
      if (t.id === FLOAT && t.params.precision === 0) throw new ArrowError('half-precision floats are not supported');
      const Kind = t.id === INT ? intKind(t) : t.params.precision === 1 ? Float32Array : Float64Array;
      const raw = typed(buffers[1], Kind, n);
      for (let i = 0; i < n; i++) values[i] = raw[i];
      break;
    }
    case BOOL: {
      const bits = buffers[1];
      for (let i = 0; i < n; i++) values[i] = ((bits[i >> 3] >> (i & 7)) & 1) === 1;
      break;
    }
    case UTF8: case LARGE_UTF8: case BINARY: case LARGE_BINARY: {
      const small = t.id === UTF8 || t.id === BINARY;
      const wide = typed(buffers[1], small ? Int32Array : BigInt64Array, n + 1);
      const offsets = small ? wide : Float64Array.from(wide, Number);
      const data = buffers[2];
      if (t.id === BINARY || t.id === LARGE_BINARY) {
        for (let i = 0; i < n; i++) values[i] = data.slice(offsets[i], offsets[i + 1]);
        break;
      }
      // One decode of the whole buffer; when it is ASCII, byte offsets are character
      // offsets and each value is a substring.
      const decoder = new TextDecoder();
      const text = decoder.decode(data);
      if (text.length === data.length) {
        for (let i = 0; i < n; i++) values[i] = text.substring(offsets[i], offsets[i + 1]);
      } else {
        for (let i = 0; i < n; i++) values[i] = decoder.decode(data.subarray(offsets[i], offsets[i + 1]));
      }
      break;
    }
    case DATE: {
      const days = t.params.unit === 0;
      const raw = typed(buffers[1], days ? Int32Array : BigInt64Array, n);
      for (let i = 0; i < n; i++) values[i] = new Date(days ? raw[i] * DAY_MS : Number(raw[i]));
      break;
    }
    case TIMESTAMP: {
      const raw = typed(buffers[1], BigInt64Array, n);
      for (let i = 0; i < n; i++) values[i] = raw[i];
      break;
    }
    default: throw new ArrowError(`reading values of type ${t} is not supported`);
  }
  if (nullCount > 0 && buffers[0].length > 0) {
    const valid = buffers[0];
    for (let i = 0; i < n; i++) if (((valid[i >> 3] >> (i & 7)) & 1) === 0) values[i] = null;
  }
  return values;
}

function bitmap(flags) {
  const out = new Uint8Array((flags.length + 7) >> 3);
  flags.forEach((f, i) => { if (f) out[i >> 3] |= 1 << (i & 7); });
  return out;
}

function encode(t, values) {
  const n = values.length;
  const nulls = values.reduce((k, v) => k + (v === null || v === undefined ? 1 : 0), 0);
  const validity = nulls ? bitmap(values.map((v) => v !== null && v !== undefined)) : new Uint8Array(0);
  const bytes = (arr) => new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  let data;
  switch (t.id) {
    case INT: {
      const Kind = intKind(t);
      const wide = Kind === BigInt64Array || Kind === BigUint64Array;
      data = bytes(Kind.from(values, (v) => (v == null ? (wide ? 0n : 0) : wide ? BigInt(v) : v)));
      break;
    }
    case FLOAT: data = bytes((t.params.precision === 1 ? Float32Array : Float64Array).from(values, (v) => v ?? 0)); break;
    case BOOL: data = bitmap(values.map(Boolean)); break;
    case UTF8: case LARGE_UTF8: case BINARY: case LARGE_BINARY: {
      const encoder = new TextEncoder();
      const parts = values.map((v) => (v == null ? new Uint8Array(0) : typeof v === 'string' ? encoder.encode(v) : v));
      const small = t.id === UTF8 || t.id === BINARY;
      const offsets = small ? new Int32Array(n + 1) : new BigInt64Array(n + 1);
      let at = 0;
      parts.forEach((p, i) => { at += p.length; offsets[i + 1] = small ? at : BigInt(at); });
      return [[[n, nulls]], [validity, bytes(offsets), concat(parts)]];
    }
    case DATE: {
      const days = values.map((v) => (v == null ? 0 : Math.floor(v.getTime() / DAY_MS)));
      data = t.params.unit === 0 ? bytes(Int32Array.from(days)) : bytes(BigInt64Array.from(days, (d) => BigInt(d * DAY_MS)));
      break;
    }
    case TIMESTAMP: data = bytes(BigInt64Array.from(values, (v) => (v == null ? 0n : BigInt(v)))); break;
    default: throw new ArrowError(`writing values of type ${t} is not supported`);
  }
  return [[[n, nulls]], [validity, data]];
}
