// `make deps` step: builds the real peers that come from Go modules (the real flannel, the latest wireguard-go, a real
// kube-apiserver) into their caches, so the tests, the bench and `make cluster MIXED=1` find them ready. Never fails:
// where Go or the module proxy is missing, it says which peers will be skipped and why.
// kube-apiserver takes about 6 minutes the first time on 2 cores, so it is built in the background (niced, holding
// the build lock of go-tool.ts): `make test` starts at once, and the tests that need it wait for that build.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type GoToolBinary, goToolBinaryOf, markBuilding } from './go-tool.js';
import { KUBE_APISERVER_TOOL, buildKubeApiserver } from './kube-apiserver.js';
import { buildRealFlannel } from './real-flannel.js';
import { buildLatestWireguardGo } from './wireguard-go.js';

const KUBE_WHAT = 'kube-apiserver (real, for the Kubernetes subnet manager tests)';
const started = Date.now();
const seconds = (since: number): number => Math.round((Date.now() - since) / 1000);
const report = (what: string, r: GoToolBinary, s: number): void => {
  const took = s > 5 ? ` (${s} s)` : '';
  process.stdout.write(r.ok ? `Go peer ready: ${what} ${r.version}${took}\n` : `Go peer not built, its tests and bench rows will be skipped: ${what}: ${r.reason}\n`);
};

if (process.argv.includes('--only=kube-apiserver')) {
  // The background builder started below: its output goes to the build log.
  report(KUBE_WHAT, await buildKubeApiserver(), seconds(started));
} else {
  const results = await Promise.all([
    buildRealFlannel().then((r) => ({ what: 'flannel (real flanneld)', r, s: seconds(started) })),
    buildLatestWireguardGo().then((r) => ({ what: 'wireguard-go (latest)', r, s: seconds(started) })),
  ]);
  for (const { what, r, s } of results) report(what, r, s);
  startKubeApiserverBuild();
  if (seconds(started) > 5) process.stdout.write(`Go peers built in ${seconds(started)} s\n`);
}

/** The cached kube-apiserver, or its build started in the background (niced) with the build lock handed to it. */
function startKubeApiserverBuild(): void {
  const bin = goToolBinaryOf(KUBE_APISERVER_TOOL);
  if (bin && existsSync(bin)) {
    process.stdout.write(`Go peer ready: ${KUBE_WHAT}\n`);
    return;
  }
  if (!bin) {
    process.stdout.write(`Go peer not built, its tests will be skipped: ${KUBE_WHAT}: deploy/local/kube-apiserver/go.mod is missing or pins no k8s.io/kubernetes\n`);
    return;
  }
  const log = join(dirname(bin), 'build.log');
  mkdirSync(dirname(bin), { recursive: true });
  const fd = openSync(log, 'w');
  const child = spawn('nice', ['-n', '10', process.execPath, fileURLToPath(import.meta.url), '--only=kube-apiserver'], { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  if (child.pid === undefined) {
    process.stdout.write(`Go peer not built: ${KUBE_WHAT}: could not start its background build\n`);
    return;
  }
  markBuilding(bin, child.pid);
  child.unref();
  process.stdout.write(`Go peer building in the background: ${KUBE_WHAT} (about 6 minutes the first time; log ${log}); the tests that need it wait for it\n`);
}
