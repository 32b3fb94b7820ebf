// Copies the browser files the demo pages use from node_modules into
// static/vendor, where the server embeds them. With --check it fails when a
// committed copy differs from the installed package (run "npm ci" first).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = [['node_modules/hls.js/dist/hls.light.min.js', 'static/vendor/hls.light.min.js']];
const check = process.argv.includes('--check');

let stale = 0;
for (const [from, to] of files) {
  const src = fs.readFileSync(path.join(root, from));
  const dst = path.join(root, to);
  if (check) {
    if (!fs.existsSync(dst) || !src.equals(fs.readFileSync(dst))) {
      console.error(`${to} is not a copy of ${from}: run "npm run vendor" in web/ and commit it`);
      stale++;
    }
  } else {
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.writeFileSync(dst, src);
  }
}
process.exit(stale ? 1 : 0);
