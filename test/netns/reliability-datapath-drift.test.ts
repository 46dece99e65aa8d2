// Data-path reliability, scenario 8: state deleted by hand under running daemons comes back — vxlan
// neighbours, FDB entries and routes (kernel and userspace), the udp device's address, route and link,
// a userspace TUN/TAP device itself, and the iptables rules of --ip-masq. host-gw routes: see
// hostgw-cluster.test.ts; a deleted kernel VXLAN device: vxlan-cluster.test.ts.
import t from 'tap';
import { DATA_PATHS } from './fixtures/datapath-harness.js';
import { driftEnv, rulesDeletedByHand, stateDeletedByHand } from './fixtures/scenario-drift.js';

for (const dp of DATA_PATHS) {
  t.test(`${dp}: state deleted by hand comes back`, async (t) => {
    const env = await driftEnv(t, dp);
    if (dp !== 'host-gw') await t.test('kernel state and devices', async (t) => { await stateDeletedByHand(t, env); });
    else await t.test('iptables rules (--ip-masq, --iptables-forward-rules)', async (t) => { await rulesDeletedByHand(t, env); });
  });
}
