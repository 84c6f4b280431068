#!/usr/bin/env node
// Build a JavaScript plugin into a floe WebAssembly component.
//
//   node guests/js/build.mjs my-plugin.js -o my-plugin.wasm
//   host plugins add my-plugin my-plugin.wasm -w warehouse
//
// Bundles the plugin with this SDK (esbuild: componentize-js takes one ES module),
// then runs componentize-js on it against the WIT world `transform-plugin`. Both are
// pinned in package.json (`npm ci` here first); nothing is downloaded.
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SDK = dirname(fileURLToPath(import.meta.url));
const usage = 'usage: node build.mjs PLUGIN.js [-o OUT.wasm] [--wit DIR]';
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      wit: { type: 'string', default: join(SDK, '..', '..', 'wit') },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (err) {
  console.error(`${err.message}\n${usage}`);
  process.exit(2);
}
const { values, positionals } = parsed;
if (values.help || positionals.length !== 1) {
  console.error(usage);
  process.exit(values.help ? 0 : 2);
}
const plugin = resolve(positionals[0]);
const output = resolve(values.output ?? plugin.replace(/\.[cm]?js$/, '') + '.wasm');
const fail = (message) => { console.error(message); process.exit(1); };
if (!(await stat(plugin).catch(() => null))?.isFile()) fail(`${positionals[0]}: no such file`);
if (!(await stat(join(values.wit, 'transform.wit')).catch(() => null))) fail(`${values.wit}: no transform.wit there (pass --wit)`);

let esbuild, componentize;
try {
  esbuild = await import('esbuild');
  ({ componentize } = await import('@bytecodealliance/componentize-js'));
} catch (err) {
  fail(`the build tools are missing (${err.message}): run \`npm ci\` in ${SDK}`);
}

const work = await mkdtemp(join(tmpdir(), 'floe-plugin-'));
try {
  // The plugin first (it calls exportPlugin), then the WIT glue.
  const entry = join(work, 'entry.js');
  await writeFile(entry, `import ${JSON.stringify(plugin)};\nexport { transform } from ${JSON.stringify(join(SDK, 'src', 'component.js'))};\n`);
  const bundle = join(work, 'plugin.bundle.js');
  await esbuild.build({
    entryPoints: [entry], outfile: bundle, bundle: true, format: 'esm', platform: 'neutral', target: 'es2022',
    alias: { 'floe-plugin': join(SDK, 'src', 'index.js') }, nodePaths: [join(SDK, 'node_modules')], logLevel: 'error',
  });
  const { component } = await componentize({
    sourcePath: bundle, witPath: resolve(values.wit), worldName: 'transform-plugin',
    // The host offers WASI's CLI world only: no wasi:http.
    disableFeatures: ['http', 'fetch-event'],
  });
  await writeFile(output, component);
  console.log(`${output} (${(component.length / 1e6).toFixed(1)} MB)`);
} catch (err) {
  fail(`building ${positionals[0]} failed: ${err.message ?? err}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
