// Soak: scenario 6 at full length, 10,000 lease add/remove cycles per data path after 1,000 warm-up
// cycles (the fast suite runs 1,000 after 100): fds, RSS and kernel state back to baseline.
import t from 'tap';
import { DATA_PATHS } from '../netns/fixtures/datapath-harness.js';
import { leaseChurn, scaleEnv } from '../netns/fixtures/scenario-scale.js';

for (const dp of DATA_PATHS) {
  t.test(`${dp}: 10,000 lease add/remove cycles`, async (t) => {
    const env = await scaleEnv(t, dp);
    await leaseChurn(t, env, 10_000, 1000);
  });
}
