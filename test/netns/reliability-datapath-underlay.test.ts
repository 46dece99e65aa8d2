// Data-path reliability, scenario 3 on every data path: 5 % random loss and 10 % duplication on the
// underlay (iptables statistic and TEE in the sending node; the VM has no netem). The link flap and the
// MTU change are in reliability-datapath-link.test.ts; the soak suite adds 1 % and 20 % loss.
import t from 'tap';
import { DATA_PATHS } from './fixtures/datapath-harness.js';
import { underlayDuplication, underlayEnv, underlayLoss } from './fixtures/scenario-underlay.js';

for (const dp of DATA_PATHS) {
  t.test(`${dp}: underlay loss and duplication`, async (t) => {
    const u = await underlayEnv(t, dp);
    await t.test('5 % loss', async (t) => { await underlayLoss(t, u, 0.05); });
    await t.test('10 % duplication', async (t) => { await underlayDuplication(t, u, 0.1); });
  });
}
