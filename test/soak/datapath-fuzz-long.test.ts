// Soak: the packet engine's fuzz target with its oracle (backends/datapath/native/fuzz) for minutes,
// not the unit suite's 20 s. Two parts:
//  1. the engine of this checkout, 8 minutes from the seed corpus: nothing may crash or fail the oracle;
//  2. the power check: the engine as of 1c82f55 (before the fix of issue 15's bug 1, the out-of-bounds
//     option compare in offload_rx.c can_append for TCP data offsets below 5), fuzzed from the same seeds
//     WITHOUT that bug's crash input, must find it again within 3 minutes (it takes seconds). Fork
//     mode, so that the other faults of that engine the oracle reports do not end the hunt. If the
//     fuzzer stops finding it, the harness lost reach, and the first part means less.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildFuzzer, ENGINE, FUZZ_DIR, hasClang, runFuzzer } from '../helpers/datapath-fuzz.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const BUG1_COMMIT = '1c82f55';
const noClang = !hasClang() && 'clang is missing: run `make deps` (it installs clang and libclang-rt-14-dev)';

function seeds(dir: string): string {
  const corpus = join(dir, 'corpus');
  execFileSync('python3', [join(FUZZ_DIR, 'make-seeds.py'), corpus]);
  return corpus;
}

t.test('8 minutes of the engine of this checkout', { skip: noClang, timeout: 20 * 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-fuzz-long-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = runFuzzer(buildFuzzer(dir), seeds(dir), 480, dir);
  t.equal(r.status, 0, `the fuzzer found nothing:\n${r.summary}`);
  t.match(r.stderr, /Done \d+ runs/, 'it ran');
  t.comment(r.summary);
});

t.test(`the fuzzer finds bug 1 again in the engine of ${BUG1_COMMIT}, without its crash input`, { skip: noClang, timeout: 20 * 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-fuzz-bug1-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const old = join(dir, 'tree');
  mkdirSync(join(old, 'src'), { recursive: true });
  cpSync(FUZZ_DIR, join(old, 'fuzz'), { recursive: true });
  for (const f of [...ENGINE, ...ENGINE.map((c) => c.replace(/\.c$/, '.h')), 'engine_internal.h', 'layout.h', 'offload.h', 'sys.h', 'mode.h']) {
    const r = spawnSync('git', ['show', `${BUG1_COMMIT}:backends/datapath/native/src/${f}`], { cwd: ROOT, encoding: 'utf8' });
    if (r.status === 0) writeFileSync(join(old, 'src', f), r.stdout);
  }
  const bin = buildFuzzer(dir, join(old, 'fuzz'));
  // -fork with -ignore_crashes: other findings in that old engine do not end the hunt.
  const r = runFuzzer(bin, seeds(dir), 180, dir, '-fork=1', '-ignore_crashes=1');
  // Fork mode prints only each crash's first line: which bug it was, the saved inputs tell.
  const crashes = readdirSync(dir).filter((f) => f.startsWith('crash-')).map((f) => join(dir, f));
  const bug1 = crashes.filter((f) => /in can_append[^\n]*offload_rx\.c/.test(spawnSync(bin, [f], { encoding: 'utf8', timeout: 60_000 }).stderr));
  const when = /negative-size-param[^\n]*\n(?:[^\n]*\n){0,20}?#\d+: [^\n]*time: (\d+)s/.exec(r.stderr);
  t.ok(bug1.length > 0, `bug 1 (can_append reading out of bounds) found within 3 minutes${when ? ` (about ${when[1]} s)` : ''}; ${crashes.length} crash inputs saved:\n${r.summary}`);
  t.comment(`bug 1 found by ${bug1.length} of ${crashes.length} saved crash inputs, first after about ${when ? when[1] : '?'} s`);
});
