// Soak: scenario 3 at every loss level of reliability.md (1, 5 and 20 % random loss on the underlay,
// 3000 datagrams each, measured within 3 points), per data path; the fast suite runs 5 % only.
import t from 'tap';
import { DATA_PATHS } from '../netns/fixtures/datapath-harness.js';
import { underlayEnv, underlayLoss } from '../netns/fixtures/scenario-underlay.js';

for (const dp of DATA_PATHS) {
  t.test(`${dp}: 1, 5 and 20 % underlay loss`, async (t) => {
    const u = await underlayEnv(t, dp);
    for (const p of [0.01, 0.05, 0.2]) {
      await t.test(`${p * 100} % loss`, async (t) => { await underlayLoss(t, u, p, { datagrams: 3000, tcpBytes: p >= 0.2 ? 2 * 1024 * 1024 : 8 * 1024 * 1024 }); });
    }
  });
}
