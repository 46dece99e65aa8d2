// Data-path reliability, scenarios 3 and 4 on every data path: eth0 down for 10 s under traffic
// (traffic back within 2 s of link-up, no lease lost), and the underlay MTU shrinking at runtime
// (no black hole: DF packets pass or get ICMP frag-needed, TCP completes).
import t from 'tap';
import { DATA_PATHS } from './fixtures/datapath-harness.js';
import { linkFlap, mtuShrinks, underlayEnv } from './fixtures/scenario-underlay.js';

for (const dp of DATA_PATHS) {
  t.test(`${dp}: link flap and MTU change`, async (t) => {
    const u = await underlayEnv(t, dp);
    await t.test('eth0 down for 10 s', async (t) => { await linkFlap(t, u, 10); });
    await t.test('underlay MTU 1500 → 1400 at runtime', async (t) => { await mtuShrinks(t, u); });
  });
}
