// `make deps` step: builds the real peers that come from Go modules (the real flannel, the latest wireguard-go)
// into their caches, so the tests, the bench and `make cluster MIXED=1` find them ready. Never fails: where Go or
// the module proxy is missing, it says which peers will be skipped and why.
import { buildRealFlannel } from './real-flannel.js';
import { buildLatestWireguardGo } from './wireguard-go.js';

const started = Date.now();
const results = await Promise.all([
  buildRealFlannel().then((r) => ({ what: 'flannel (real flanneld)', r })),
  buildLatestWireguardGo().then((r) => ({ what: 'wireguard-go (latest)', r })),
]);
for (const { what, r } of results) {
  process.stdout.write(r.ok ? `Go peer ready: ${what} ${r.version}\n` : `Go peer not built, its tests and bench rows will be skipped: ${what}: ${r.reason}\n`);
}
if (Date.now() - started > 5000) process.stdout.write(`Go peers built in ${Math.round((Date.now() - started) / 1000)} s\n`);
