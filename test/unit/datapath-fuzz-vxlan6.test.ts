// A short run of the IPv6 VTEP's fuzz target (backends/datapath/native/fuzz/fuzz-vxlan6.c), built with
// AddressSanitizer and UBSan, with its oracle: every frame the IPv6 engine writes to its device and every
// datagram it sends must be well-formed IPv6 with valid (or, where allowed, partial) checksums, within the MTU.
// First the seeds of make-seeds6.py are checked to reach the paths they were written for, then 20 s from them.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ENGINE_LIBS, NATIVE, engineSources } from '../helpers/native-sources.js';
import { hasClang, runFuzzer } from '../helpers/datapath-fuzz.js';

const FUZZ = join(NATIVE, 'fuzz');

/** What each seed must reach: counters printed by FUZZ_VERBOSE=1. */
const SEEDS: Record<string, RegExp> = {
  'rx-coalesce': /rx 5 .*coalesced 1 udp 0 /,
  'rx-coalesce-udp': /rx 4 .*coalesced 1 udp 1 /,
  'rx-plain': /rx 3 .*coalesced 0 /,
  'rx-super': /super 1 /,
  'rx-super-plain': /rx 4 .*super 1 /,
  'tx-ptb': /ptb 1 .*oversize 1/,
  'tx-ptb-plain': /ptb 1 .*oversize 1/,
  'tx-tso6': /tx 10 /,
  'tx-uso': /tx 4 /,
};

t.test('fuzz the IPv6 VTEP with an oracle', { skip: !hasClang() && 'clang is missing: run `make deps`' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-fuzz6-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'fuzz-vxlan6');
  execFileSync('clang', ['-g', '-O1', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined',
    join(FUZZ, 'fuzz-vxlan6.c'), ...engineSources(), ...ENGINE_LIBS, '-o', bin], { stdio: 'pipe' });
  const corpus = join(dir, 'corpus');
  execFileSync('python3', [join(FUZZ, 'make-seeds6.py'), corpus]);

  await t.test('each seed reaches its path and passes the oracle', async (t) => {
    t.same(readdirSync(corpus).sort(), Object.keys(SEEDS).sort(), 'the seeds');
    for (const [seed, expected] of Object.entries(SEEDS)) {
      const r = spawnSync(bin, [join(corpus, seed)], { encoding: 'utf8', env: { ...process.env, FUZZ_VERBOSE: '1' }, timeout: 60_000 });
      t.equal(r.status, 0, `${seed}: ran clean${/ORACLE|ERROR/.test(r.stderr) ? `:\n${r.stderr}` : ''}`);
      t.match(r.stderr, expected, `${seed}: ${r.stderr.split('\n').find((l) => l.startsWith('rx ')) ?? ''}`);
    }
  });

  await t.test('20 s from the seeds', async (t) => {
    const r = runFuzzer(bin, corpus, 20, dir, '-max_len=4096');
    t.equal(r.status, 0, `the fuzzer found nothing:\n${r.summary}`);
    t.match(r.stderr, /Done \d+ runs/, 'it ran');
    t.comment(r.summary.split('\n').filter((l) => /Done/.test(l)).join(' '));
  });
});
