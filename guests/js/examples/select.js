// select: keep, drop and rename columns (the Rust `select`'s arguments and answers).
//
// Args: {"columns": ["id", "price_*"], "drop": ["*_internal"], "rename": {"old": "new"}},
// every key optional. Columns pass through as they arrived: nothing is decoded.
import { Batch, InvalidArgs, Plugin, Schema, UnsupportedSchema, exportPlugin } from 'floe-plugin';

/** The indices of the columns a name or a glob (* and ?) selects, in table order. */
function matches(pattern, names) {
  if (!/[*?]/.test(pattern)) {
    if (!names.includes(pattern)) throw new UnsupportedSchema(`no column "${pattern}" (columns: ${names.join(', ')})`);
    return [names.indexOf(pattern)];
  }
  const glob = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.');
  const regex = new RegExp(`^${glob}$`, 's');
  return names.flatMap((name, i) => (regex.test(name) ? [i] : []));
}

class Select extends Plugin {
  static name = 'select';
  static description = 'Keep, drop and rename columns (names or globs with * and ?).';
  static stateless = true;
  static argsSchema = {
    type: 'object',
    properties: {
      columns: { type: 'array', items: { type: 'string' } },
      drop: { type: 'array', items: { type: 'string' } },
      rename: { type: 'object', additionalProperties: { type: 'string' } },
    },
    additionalProperties: false,
  };

  constructor(schema, args) {
    super(schema, args);
    const names = schema.names;
    let kept = names.map((_, i) => i);
    if (args.columns) {
      kept = [];
      for (const pattern of args.columns) kept.push(...matches(pattern, names).filter((i) => !kept.includes(i)));
    }
    for (const pattern of args.drop ?? []) {
      const dropped = matches(pattern, names);
      kept = kept.filter((i) => !dropped.includes(i));
    }
    if (!kept.length) throw new InvalidArgs('the selection keeps no columns: name at least one');
    const rename = args.rename ?? {};
    for (const old of Object.keys(rename)) {
      if (!kept.some((i) => names[i] === old)) throw new UnsupportedSchema(`cannot rename "${old}": not among the selected columns`);
    }
    const needed = [...kept].sort((a, b) => a - b); // process() receives these, in table order
    this.positions = kept.map((i) => needed.indexOf(i));
    this.names = kept.map((i) => rename[names[i]] ?? names[i]);
    this.schema = new Schema(kept.map((i, k) => schema.fields[i].withName(this.names[k])), schema.metadata);
    this.needed = needed.map((i) => names[i]);
  }

  outputSchema() { return this.schema; }

  inputColumns() { return this.needed; }

  process(batch) {
    const columns = this.positions.map((p, k) => batch.columns[p].renamed(this.names[k]));
    return new Batch(this.schema, columns, batch.numRows);
  }
}

exportPlugin(Select);
