// The offload TX step against the real kernel, without devices: backends/datapath/native/test/
// tx-batch-test.c feeds device reads through a SOCK_SEQPACKET pair and receives on a 127.0.0.1 UDP
// socket with UDP_GRO, so each UDP GSO message arrives as one train. It checks how datagrams are
// grouped (messages filled across super-packets, a short datagram ends a message, equal plain packets
// share one, a batch without UDP GSO sent mid-step with nothing lost, a USO read split into its
// datagrams, IPv4 in udp mode and IPv6 in vxlan mode) and every datagram's checksums, sequence and bytes with its own checksum code. Built
// with AddressSanitizer and UBSan.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ENGINE_LIBS, NATIVE, engineSources } from '../helpers/native-sources.js';

const SOURCES = engineSources();

t.test('offload TX: datagrams grouped into UDP GSO messages as designed, each intact', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-txbatch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'tx-batch-test');
  execFileSync('cc', ['-O1', '-g', '-Wall', '-fsanitize=address,undefined', '-fno-sanitize-recover=undefined',
    join(NATIVE, 'test', 'tx-batch-test.c'), ...SOURCES, ...ENGINE_LIBS, '-o', bin], { stdio: 'pipe' });
  const r = spawnSync(bin, { encoding: 'utf8', timeout: 60_000 });
  t.comment(r.stdout.trim().replace(/\[(1,){20,}1\]/, '[1 × 92]'));
  t.equal(r.status, 0, `every check passed${r.stderr ? `:\n${r.stderr}` : ''}`);
  t.match(r.stdout, /two 46-segment super-packets: trains \[45,45,2\]/, 'messages filled across super-packets');
  t.match(r.stdout, /all checks passed/);
});
