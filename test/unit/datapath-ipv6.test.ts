// The IPv6 VTEP's packet helpers in C (backends/datapath/native/test/ipv6-test.c): IPv6 header and transport
// sanity, TCP/UDP checksums over the IPv6 pseudo-header, ICMPv6 Packet Too Big, TCP segmentation of an IPv6
// super-frame and the IPv6 peer table's lookups, each checked with the test's own checksum code. Built with
// AddressSanitizer and UBSan (a read past a packet aborts the run).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ENGINE_LIBS, NATIVE, engineSources } from '../helpers/native-sources.js';

t.test('IPv6 packet helpers of the engine', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-ipv6-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'ipv6-test');
  execFileSync('cc', ['-O1', '-g', '-Wall', '-fsanitize=address,undefined', '-fno-sanitize-recover=undefined',
    join(NATIVE, 'test', 'ipv6-test.c'), ...engineSources(), ...ENGINE_LIBS, '-o', bin], { stdio: 'pipe' });
  const r = spawnSync(bin, { encoding: 'utf8', timeout: 60_000 });
  t.comment(r.stdout.trim());
  t.equal(r.status, 0, `every check passed${r.stderr ? `:\n${r.stderr}` : ''}`);
  for (const part of ['headers', 'checksums', 'packet too big', 'peer table']) t.match(r.stdout, new RegExp(`${part}: checked`), `${part} checked`);
  t.match(r.stdout, /segmentation: 4 segments checked/);
  t.match(r.stdout, /all checks passed/);
});
