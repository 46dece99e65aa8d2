// Data-path reliability, scenario 5: forged and malformed datagrams on the udp (8285) and vxlan (8472)
// ports of our packet engine — truncation at every header boundary, non-IPv4, bad IHL and lengths,
// fragments, TTL ≤ 1, inner sources outside the sender's subnet or the cluster, bad checksums, oversize —
// each dropped and counted exactly; then ~50k pps of garbage for 10 s with CPU and RSS measured.
// (host-gw has no port; a kernel VXLAN device is the kernel's, as in flannel.) Earlier cases that
// udp-cluster and vxlan-cluster already cover (no lease, wrong VNI, wrong inner MAC) are not repeated
// except where they are part of the header walk.
import t from 'tap';
import { forgedCases, forgeryEnv, garbageFlood } from './fixtures/scenario-forgery.js';

for (const engine of ['udp', 'vxlan'] as const) {
  t.test(`${engine}: forged and malformed datagrams, and a flood`, async (t) => {
    const env = await forgeryEnv(t, engine);
    await t.test('each case dropped and counted exactly', async (t) => { await forgedCases(t, env, engine); });
    await t.test('~50k pps of garbage for 10 s', async (t) => { await garbageFlood(t, env, engine); });
  });
}
