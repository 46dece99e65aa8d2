// `make deps` step: builds the real peers that come from Go modules (the real flannel, the latest wireguard-go, a real
// kube-apiserver) into their caches, so the tests, the bench and `make cluster MIXED=1` find them ready. Never fails:
// where Go or the module proxy is missing, it says which peers will be skipped and why.
import type { GoToolBinary } from './go-tool.js';
import { buildKubeApiserver } from './kube-apiserver.js';
import { buildRealFlannel } from './real-flannel.js';
import { buildLatestWireguardGo } from './wireguard-go.js';

const started = Date.now();
const seconds = (since: number): number => Math.round((Date.now() - since) / 1000);
const timed = (what: string, build: () => Promise<GoToolBinary>) => build().then((r) => ({ what, r, s: seconds(started) }));
const results = await Promise.all([
  timed('flannel (real flanneld)', buildRealFlannel),
  timed('wireguard-go (latest)', buildLatestWireguardGo),
  // Long the first time (about half an hour on 2 cores), cached after that.
  timed('kube-apiserver (real, for test/integration/kube-apiserver.test.ts and the kube subnet manager tests)', buildKubeApiserver),
]);
for (const { what, r, s } of results) {
  const took = s > 5 ? ` (${s} s)` : '';
  process.stdout.write(r.ok ? `Go peer ready: ${what} ${r.version}${took}\n` : `Go peer not built, its tests and bench rows will be skipped: ${what}: ${r.reason}\n`);
}
if (seconds(started) > 5) process.stdout.write(`Go peers built in ${seconds(started)} s\n`);
