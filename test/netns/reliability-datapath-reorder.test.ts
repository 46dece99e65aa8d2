// Data-path reliability, scenario 3 (reordering): the underlay delays every packet by 20 ± 15 ms in a
// userspace TUN hop (the VM has no netem), so packets overtake each other. Nothing may be lost,
// duplicated or damaged, and TCP completes. A kernel VXLAN device pins its outer route to eth0 and
// bypasses the hop, so that data path is not run here.
import t from 'tap';
import { DATA_PATHS } from './fixtures/datapath-harness.js';
import { underlayEnv, underlayReorder } from './fixtures/scenario-underlay.js';

for (const dp of DATA_PATHS.filter((d) => d !== 'vxlan-kernel')) {
  t.test(`${dp}: underlay reordering`, async (t) => {
    const u = await underlayEnv(t, dp);
    await underlayReorder(t, u);
  });
}
