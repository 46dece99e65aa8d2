// The packet engine's defences against hostile datagrams and a few send-path edge cases, against the
// real kernel: backends/datapath/native/test/engine-hardening-test.c sends real datagrams over
// 127.0.0.0/8 from the peer's PublicIP (UDP GSO, so GRO trains arrive), runs the engine's own pump
// steps, and checks what it wrote to its device with its own checksum code. Each case below failed
// before its fix. Built with AddressSanitizer and UBSan (a read past a packet aborts the run).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ENGINE_LIBS, NATIVE, engineSources } from '../helpers/native-sources.js';

const SOURCES = engineSources();

const CASES: Record<string, RegExp> = {
  'data-offset-offload': /data offsets 0-4 and 15 \(offload\): 0 written, rx_malformed 11/,
  'data-offset-plain': /data offsets 0-4 and 15 \(per-packet\): 0 written, rx_malformed 11/,
  'header-checksum-offload': /bad inner header checksums \(offload\): 2 written with 2000 payload bytes, bad_checksum 2/,
  'header-checksum-plain': /bad inner header checksums \(per-packet\): 2 written with 2000 payload bytes, bad_checksum 2/,
  'foreign-destination': /foreign destinations: 1 written, foreign_destination 5/,
  'super-frame-fragment': /vxlan super-frames: 1 written, oversize 1/,
  'tx-read-error': /device read error after 3 packets: pump returned -5, 3 sent, tx_packets 3/,
  'udp-zero-checksum': /UDP checksum computing to 0: sent as 0xffff/,
  'snapshot-seq': /snapshot sequence published: 4/,
};

t.test('packet engine hardening against the real kernel', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-hardening-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'engine-hardening-test');
  execFileSync('cc', ['-O1', '-g', '-Wall', '-fsanitize=address,undefined', '-fno-sanitize-recover=undefined', '-Wl,--wrap=read',
    join(NATIVE, 'test', 'engine-hardening-test.c'), ...SOURCES, ...ENGINE_LIBS, '-o', bin], { stdio: 'pipe' });
  for (const [name, expected] of Object.entries(CASES)) {
    const r = spawnSync(bin, [name], { encoding: 'utf8', timeout: 60_000 });
    t.comment(r.stdout.trim());
    t.equal(r.status, 0, `${name}: every check passed${r.stderr ? `:\n${r.stderr}` : ''}`);
    t.match(r.stdout, expected, `${name}: as designed`);
  }
});
