// Data-path reliability, scenario 2: a peer changes its PublicIP (new subnet, old lease kept until its
// TTL, peers follow, the old address is refused), then dies (etcd expires its lease within TTL + 4 s,
// and its state goes everywhere within 2 s of that, plus the time the probe itself takes).
import t from 'tap';
import { DATA_PATHS } from './fixtures/datapath-harness.js';
import { peerChangesIpThenDies } from './fixtures/scenario-peers.js';

for (const dp of DATA_PATHS) {
  t.test(`${dp}: a peer changes its PublicIP, then dies`, async (t) => {
    await peerChangesIpThenDies(t, dp);
  });
}
