// Builds dist/cni/flannel, the CNI plugin as a Node single-executable application: esbuild bundles
// deploy/cni/main.ts into one CommonJS file, node --experimental-sea-config makes the blob, postject injects
// it into a copy of this node binary. Skipped when bundle and node are unchanged. Run by `npm run build`.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

function run(file: string, args: readonly string[], what: string): void {
  const r = spawnSync(file, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${what} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stdout}${r.stderr}`);
}

function checkFuse(node: string): void {
  if (!readFileSync(node).includes(FUSE)) {
    throw new Error(`${node} (node ${process.version}) has no single-executable fuse ${FUSE}; ` +
      'build with the official Node.js 20 binary (nodejs.org, NodeSource or the node:20 images)');
  }
}

async function main(): Promise<void> {
  const root = packageRoot();
  const outDir = join(root, 'dist', 'cni');
  const target = join(outDir, 'flannel');
  const bundle = join(outDir, 'flannel.cjs');
  const stampFile = join(outDir, '.flannel.stamp');
  mkdirSync(outDir, { recursive: true });
  checkFuse(process.execPath);
  await build({
    entryPoints: [join(root, 'deploy', 'cni', 'main.ts')], outfile: bundle, bundle: true, platform: 'node',
    format: 'cjs', target: 'node20', logLevel: 'warning', legalComments: 'none',
    banner: { js: '// The flannel CNI plugin of flannel-ts, bundled from deploy/cni/main.ts by deploy/cni/build-sea.ts.' },
  });
  const stamp = createHash('sha256').update(readFileSync(bundle)).update(process.version).update(process.execPath).digest('hex');
  if (existsSync(target) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return;

  const seaConfig = join(outDir, 'sea-config.json');
  const blob = join(outDir, 'flannel.blob');
  const tmp = join(outDir, '.flannel.tmp');
  try {
    writeFileSync(seaConfig, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }));
    run(process.execPath, ['--experimental-sea-config', seaConfig], 'node --experimental-sea-config');
    copyFileSync(process.execPath, tmp);
    chmodSync(tmp, 0o755);
    const postject = createRequire(import.meta.url).resolve('postject/dist/cli.js');
    run(process.execPath, [postject, tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', FUSE], 'postject');
    const smoke = spawnSync(tmp, [], { env: { CNI_COMMAND: 'VERSION' }, input: '', encoding: 'utf8' });
    if (smoke.status !== 0 || !smoke.stdout.includes('"supportedVersions"')) {
      throw new Error(`the built plugin does not answer VERSION: exit ${smoke.status}\n${smoke.stdout}${smoke.stderr}`);
    }
    renameSync(tmp, target);
    writeFileSync(stampFile, stamp);
  } finally {
    for (const f of [seaConfig, blob, tmp]) rmSync(f, { force: true });
  }
}

await main().catch((err: unknown) => {
  process.stderr.write(`build-sea: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
