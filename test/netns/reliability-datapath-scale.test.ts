// Data-path reliability, scenarios 6 and 7 on every data path: 1000 peers programmed end to end after
// their keys land in etcd (8 transactions), then 1000 lease add/remove cycles (fds, RSS and kernel state
// back to baseline). The soak suite runs 10,000 cycles. hostgw-cluster covers RouteNetwork alone with
// 1000 routes; this is the whole daemon, from etcd to the kernel or the packet engine.
import t from 'tap';
import { DATA_PATHS } from './fixtures/datapath-harness.js';
import { leaseChurn, scaleEnv, thousandPeers } from './fixtures/scenario-scale.js';

for (const dp of DATA_PATHS) {
  t.test(`${dp}: 1000 peers, then 1000 lease add/remove cycles`, async (t) => {
    const env = await scaleEnv(t, dp);
    await t.test('1000 peers programmed', async (t) => { await thousandPeers(t, env, 1000); });
    await t.test('1000 add/remove cycles', async (t) => { await leaseChurn(t, env, 1000); });
  });
}
