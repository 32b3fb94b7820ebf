// Builds the SDK bundle with esbuild:
//   node scripts/build.mjs           dist/switchboard.js and the copy the server embeds (web/sdk/switchboard.js)
//   node scripts/build.mjs --check   fails when the committed web/sdk/switchboard.js differs from a fresh build
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const embedded = path.resolve(root, '../../web/sdk/switchboard.js');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

const result = await build({
  entryPoints: [path.join(root, 'src/index.ts')],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  platform: 'neutral',
  write: false,
  legalComments: 'none',
  banner: { js: `// ${pkg.name} ${pkg.version}: the Switchboard browser SDK. Built from sdk/js by "npm run build"; do not edit.` },
  logLevel: 'warning',
});
const code = result.outputFiles[0].contents;

if (process.argv.includes('--check')) {
  const committed = fs.existsSync(embedded) ? fs.readFileSync(embedded) : Buffer.alloc(0);
  if (!Buffer.from(code).equals(committed)) {
    console.error(`${path.relative(process.cwd(), embedded)} differs from a fresh build of sdk/js: run "npm run build" in sdk/js and commit it`);
    process.exit(1);
  }
  console.log('web/sdk/switchboard.js matches a fresh build');
} else {
  fs.mkdirSync(path.join(root, 'dist'), { recursive: true });
  fs.writeFileSync(path.join(root, 'dist/switchboard.js'), code);
  fs.mkdirSync(path.dirname(embedded), { recursive: true });
  fs.writeFileSync(embedded, code);
}
