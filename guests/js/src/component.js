// The WIT side (floe:plugin/transform, as componentize-js binds it): turns the
// exported class's answers into the contract's bytes and errors. The bundle `build.mjs`
// makes imports the plugin, then exports `transform` from here.
import * as arrow from './arrow.js';
import { Failed, InvalidArgs, PluginError, RowFilter, UnsupportedSchema, exported } from './index.js';

const MASK_SCHEMA = new arrow.Schema([new arrow.Field('keep', arrow.bool(), true)]);

function pluginClass() {
  if (!exported.plugin) throw new Failed('the plugin module did not call exportPlugin(...)');
  return exported.plugin;
}

/** Run `f`; whatever it throws becomes the contract's error variant. */
function guarded(f) {
  try {
    return f();
  } catch (err) {
    if (err instanceof InvalidArgs) throw { tag: 'invalid-args', val: err.message };
    if (err instanceof UnsupportedSchema || err instanceof arrow.ArrowError) {
      throw { tag: 'unsupported-schema', val: err.message };
    }
    if (err instanceof PluginError) throw { tag: 'failed', val: err.message };
    const where = String(err?.stack ?? '').split('\n')[0];
    throw { tag: 'failed', val: `${err?.name ?? 'Error'}: ${err?.message ?? err}${where ? ` at ${where}` : ''}` };
  }
}

function parseArgs(text, schema) {
  let args;
  try {
    args = JSON.parse(text || '{}');
  } catch (err) {
    throw new InvalidArgs(`the arguments are not JSON: ${err.message}`);
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    throw new InvalidArgs('the arguments must be a JSON object');
  }
  const known = Object.keys(schema.properties ?? {});
  const unknown = Object.keys(args).filter((k) => !known.includes(k)).sort();
  if (schema.additionalProperties === false && unknown.length) {
    throw new InvalidArgs(`unknown argument '${unknown[0]}' (known: ${known.join(', ') || 'none'})`);
  }
  const missing = (schema.required ?? []).filter((k) => !(k in args));
  if (missing.length) throw new InvalidArgs(`missing argument '${missing[0]}'`);
  return args;
}

class Instance {
  static bind(inputSchema, args) {
    return guarded(() => {
      const schema = arrow.decodeSchema(inputSchema);
      const cls = pluginClass();
      const self = new Instance();
      self.plugin = new cls(schema, parseArgs(args, cls.argsSchema));
      self.filter = self.plugin instanceof RowFilter;
      self.columns = self.filter ? self.plugin.columns() : self.plugin.inputColumns();
      self.output = arrow.encodeSchema(self.filter ? schema : self.plugin.outputSchema());
      return self;
    });
  }

  outputSchema() { return this.output; }

  inputColumns() { return this.columns ? [...this.columns] : undefined; }

  process(bytes) {
    return guarded(() => {
      const batch = arrow.decodeBatch(bytes);
      if (this.filter) {
        const keep = this.plugin.keep(batch);
        if (keep.length !== batch.numRows) {
          throw new Failed(`keep() returned ${keep.length} values for ${batch.numRows} rows`);
        }
        const mask = arrow.Column.fromArray(MASK_SCHEMA.fields[0], Array.from(keep, Boolean));
        return arrow.encodeBatch(new arrow.Batch(MASK_SCHEMA, [mask], batch.numRows));
      }
      const out = this.plugin.process(batch);
      return out == null ? undefined : arrow.encodeBatch(out);
    });
  }

  finish() {
    return guarded(() => {
      const out = this.filter ? null : this.plugin.finish();
      return out == null ? undefined : arrow.encodeBatch(out);
    });
  }
}

export const transform = {
  describe() {
    const cls = pluginClass();
    return {
      name: cls.name,
      version: cls.version,
      kind: cls.prototype instanceof RowFilter ? 'filter' : 'transform',
      description: cls.description,
      argsSchema: JSON.stringify(cls.argsSchema),
      stateless: Boolean(cls.stateless),
    };
  },
  Instance,
};
