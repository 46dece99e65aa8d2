// Data-path reliability, scenario 1: SIGKILL and restart under traffic, on every data path. The fast
// suite runs 5 cycles per data path; test/soak runs 20. Pass criteria and figures: test/RELIABILITY.md.
import t from 'tap';
import { DATA_PATHS } from './fixtures/datapath-harness.js';
import { restartCycles } from './fixtures/scenario-restart.js';

const CYCLES = 5;

for (const dp of DATA_PATHS) {
  t.test(`${dp}: ${CYCLES} SIGKILL+restart cycles under a 100 pps stream`, async (t) => {
    await restartCycles(t, dp, CYCLES);
  });
}
