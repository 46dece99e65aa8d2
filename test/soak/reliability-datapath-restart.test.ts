// Soak: scenario 1 at full length, 20 SIGKILL+restart cycles per data path under a 100 pps stream
// (the fast suite runs 5). Run with `npm run test:soak`; results in test/RELIABILITY.md.
import t from 'tap';
import { DATA_PATHS } from '../netns/fixtures/datapath-harness.js';
import { restartCycles } from '../netns/fixtures/scenario-restart.js';

for (const dp of DATA_PATHS) {
  t.test(`${dp}: 20 SIGKILL+restart cycles under a 100 pps stream`, async (t) => {
    await restartCycles(t, dp, 20);
  });
}
