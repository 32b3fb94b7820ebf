// Builds the SDK bundles with esbuild:
//   node scripts/build.mjs           dist/switchboard.js and dist/switchboard-worker.js (the SharedWorker
//                                    of sharedConnection), and the copies the server embeds (web/sdk/)
//   node scripts/build.mjs --check   fails when a committed bundle in web/sdk differs from a fresh build
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

const bundles = [
  { entry: 'src/index.ts', file: 'switchboard.js', what: 'the Switchboard browser SDK' },
  { entry: 'src/worker.ts', file: 'switchboard-worker.js', what: 'the SharedWorker of the Switchboard browser SDK' },
];

let failed = false;
for (const b of bundles) {
  const result = await build({
    entryPoints: [path.join(root, b.entry)],
    bundle: true,
    format: 'esm',
    target: 'es2020',
    platform: 'neutral',
    write: false,
    legalComments: 'none',
    banner: { js: `// ${pkg.name} ${pkg.version}: ${b.what}. Built from sdk/js by "npm run build"; do not edit.` },
    logLevel: 'warning',
  });
  const code = result.outputFiles[0].contents;
  const embedded = path.resolve(root, '../../web/sdk', b.file);
  if (process.argv.includes('--check')) {
    const committed = fs.existsSync(embedded) ? fs.readFileSync(embedded) : Buffer.alloc(0);
    if (!Buffer.from(code).equals(committed)) {
      console.error(`${path.relative(process.cwd(), embedded)} differs from a fresh build of sdk/js: run "npm run build" in sdk/js and commit it`);
      failed = true;
    } else {
      console.log(`web/sdk/${b.file} matches a fresh build`);
    }
  } else {
    fs.mkdirSync(path.join(root, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(root, 'dist', b.file), code);
    fs.mkdirSync(path.dirname(embedded), { recursive: true });
    fs.writeFileSync(embedded, code);
  }
}
if (failed) process.exit(1);
