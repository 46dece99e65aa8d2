// A short libFuzzer run of the packet engine's split, parse and coalescing code (the C target in
// backends/datapath/native/fuzz), built with AddressSanitizer and UBSan. Any crash, leak, overflow
// or undefined behaviour fails the test. Longer runs: see backends/datapath/native/fuzz/README.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';

const NATIVE = new URL('../../backends/datapath/native/', import.meta.url).pathname;
const SOURCES = ['offload_tx.c', 'offload_rx.c', 'csum.c', 'engine.c', 'vxlan.c', 'peers.c', 'ipv4.c', 'segment.c'].map((f) => join(NATIVE, 'src', f));
const hasClang = spawnSync('clang', ['--version']).status === 0;

t.test('fuzz the offload split and coalescing code', { skip: !hasClang && 'clang is missing: run `make deps` (it installs clang and libclang-rt-14-dev)' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-fuzz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'fuzz-datapath');
  execFileSync('clang', ['-g', '-O1', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined',
    join(NATIVE, 'fuzz', 'fuzz-datapath.c'), ...SOURCES, '-o', bin], { stdio: 'pipe' });
  execFileSync('python3', [join(NATIVE, 'fuzz', 'make-seeds.py'), join(dir, 'corpus')]);
  const r = spawnSync(bin, ['-max_total_time=15', '-max_len=66000', '-timeout=5', join(dir, 'corpus')], { encoding: 'utf8', timeout: 120_000 });
  const summary = r.stderr.split('\n').filter((l) => /DONE|Done|ERROR|SUMMARY/.test(l)).join('\n');
  t.equal(r.status, 0, `the fuzzer found nothing:\n${summary}`);
  t.match(r.stderr, /Done \d+ runs/, 'it ran');
  t.comment(summary);
});
