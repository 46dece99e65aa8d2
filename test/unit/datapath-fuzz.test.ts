// A short run of the packet engine's fuzz target (backends/datapath/native/fuzz), built with
// AddressSanitizer and UBSan, with its oracle: every datagram the engine sends and every packet it
// writes must carry the bytes it was given, with valid checksums, within the MTU, to the right peer.
// The committed crash inputs (fuzz/crashes/) run first, as regressions. Any crash, oracle violation,
// leak or undefined behaviour fails the test. The long run is test/soak/datapath-fuzz-long.test.ts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildFuzzer, crashInputs, FUZZ_DIR, hasClang, runFuzzer } from '../helpers/datapath-fuzz.js';

t.test('fuzz the packet engine with an oracle', { skip: !hasClang() && 'clang is missing: run `make deps` (it installs clang and libclang-rt-14-dev)' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-fuzz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = buildFuzzer(dir);

  await t.test('the committed crash inputs pass', async (t) => {
    const inputs = crashInputs();
    t.ok(inputs.length > 0, 'there are crash inputs');
    const r = spawnSync(bin, inputs, { encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 0, `each ran clean:\n${r.stderr.split('\n').filter((l) => /ORACLE|ERROR|SUMMARY/.test(l)).join('\n')}`);
    t.equal((r.stderr.match(/^Executed /gm) ?? []).length, inputs.length, 'each ran');
  });

  await t.test('20 s from the seed corpus', async (t) => {
    const corpus = join(dir, 'corpus');
    spawnSync('python3', [join(FUZZ_DIR, 'make-seeds.py'), corpus]);
    const r = runFuzzer(bin, corpus, 20, dir);
    t.equal(r.status, 0, `the fuzzer found nothing:\n${r.summary}`);
    t.match(r.stderr, /Done \d+ runs/, 'it ran');
    t.comment(r.summary);
  });
});
