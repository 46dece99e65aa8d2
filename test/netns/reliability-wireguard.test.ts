// Reliability of the wireguard backend (issue 16, "Also"): the SIGKILL-restart scenario of
// test/RELIABILITY.md (D1) with {"Type":"wireguard"} (WR1): 5 cycles under a 100 pps pod→pod UDP stream,
// scenario-restart.ts as for udp and vxlan, plus, for wireguard, the restarted daemon reuses its key file
// (LocalCluster.wgKeyFileOf), completes a handshake with the peer that kept its old session, and the leases
// keep their PublicKey. The etcd outage across the rekey (WR2) waits on the real 120 s timer and lives in
// test/timers/wireguard-rekey-etcd-down.test.ts.
import t from 'tap';
import { restartCycles } from './fixtures/scenario-restart.js';

const CYCLES = 5;

t.setTimeout(5 * 60_000);

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and TUN');
} else {
  t.test(`wireguard: ${CYCLES} SIGKILL+restart cycles under a 100 pps stream`, async (t) => {
    await restartCycles(t, 'wireguard', CYCLES);
  });
}
