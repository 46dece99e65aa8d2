// `npm run image` / `make image`: builds the DaemonSet's image without any registry (see image.ts) or finds it cached,
// then says its size and what is in it. `--background` (make deps) starts a missing build niced in the background,
// holding the build lock, so that the container tests of a fresh `make test` wait for it instead of starting another.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../../lib/run-command.js';
import { markBuilding } from '../local/go-tool.js';
import { IMAGE, buildImage, cacheDir, imageKey, keyedImage, missingTools } from './image.js';

const mb = (bytes: number): string => `${Math.round(bytes / 1e6)} MB`;

async function background(): Promise<void> {
  const missing = await missingTools();
  if (missing.length) {
    process.stdout.write(`Image not built, the container tests will be skipped: ${missing.join(', ')} not installed\n`);
    return;
  }
  const key = imageKey();
  if ((await runCommand('podman', ['image', 'exists', keyedImage(key)])).code === 0) {
    process.stdout.write(`Image ready: ${keyedImage(key)}\n`);
    return;
  }
  mkdirSync(cacheDir(), { recursive: true });
  const log = join(cacheDir(), 'build.log');
  const fd = openSync(log, 'w');
  const child = spawn('nice', ['-n', '10', process.execPath, fileURLToPath(import.meta.url)], { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  if (child.pid === undefined) {
    process.stdout.write('Image not built: could not start its background build\n');
    return;
  }
  markBuilding(join(cacheDir(), `image-${key}.built`), child.pid);
  child.unref();
  process.stdout.write(`Image building in the background: ${keyedImage(key)} (a minute or two; log ${log}); the container tests wait for it\n`);
}

async function main(): Promise<number> {
  if (process.argv.includes('--background')) {
    await background();
    return 0;
  }
  const r = await buildImage((line) => process.stdout.write(`  ${line}\n`));
  if (!r.ok) {
    process.stderr.write(`image: ${r.reason}\n`);
    return 1;
  }
  process.stdout.write(`${r.built ? 'Built' : 'Cached'}: ${IMAGE} (${r.id.slice(0, 12)}), ${mb(r.sizeBytes)}, in ${r.seconds} s\n`);
  const contents = await runCommand('podman', ['run', '--rm', '--runtime=runc', '--network=none', '--ulimit=nofile=4096:4096', '--ulimit=nproc=4096:4096',
    '--entrypoint=cat', IMAGE, '/opt/flannel-ts/CONTENTS']);
  process.stdout.write(contents.code === 0 ? contents.stdout : `(could not read /opt/flannel-ts/CONTENTS: ${contents.stderr.trim()})\n`);
  return 0;
}

process.exitCode = await main();
