// Builds and runs the packet engine's libFuzzer target (backends/datapath/native/fuzz) for the unit
// and soak tests: ASan + UBSan, the harness and oracle with the engine sources of a given folder.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { ENGINE, ENGINE_LIBS, NATIVE, engineSources } from './native-sources.js';

export { ENGINE, NATIVE };
export const FUZZ_DIR = join(NATIVE, 'fuzz');
const HARNESS = ['fuzz-datapath.c', 'rig.c', 'oracle.c', 'pkt.c'];

export function hasClang(): boolean {
  return spawnSync('clang', ['--version']).status === 0;
}

/** Compiles the fuzzer into dir; `fuzzDir` holds the harness, its ../src the engine (default: this checkout). */
export function buildFuzzer(dir: string, fuzzDir = FUZZ_DIR): string {
  const bin = join(dir, 'fuzz-datapath');
  execFileSync('clang', ['-g', '-O1', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined',
    ...HARNESS.map((f) => join(fuzzDir, f)), ...engineSources(join(fuzzDir, '..', 'src')), ...ENGINE_LIBS, '-o', bin], { stdio: 'pipe' });
  return bin;
}

/** The committed inputs that once crashed the engine or failed the oracle. */
export function crashInputs(): string[] {
  const dir = join(FUZZ_DIR, 'crashes');
  return readdirSync(dir).filter((f) => !f.startsWith('.') && !f.endsWith('.md')).map((f) => join(dir, f));
}

export interface FuzzRun { status: number | null; stderr: string; summary: string; seconds: number }

/** Fuzzes from `corpus` for `seconds`; crash files land in `artifacts`. Extra libFuzzer flags may follow. */
export function runFuzzer(bin: string, corpus: string, seconds: number, artifacts: string, ...flags: string[]): FuzzRun {
  const start = Date.now();
  const r = spawnSync(bin, [`-max_total_time=${seconds}`, '-max_len=512', '-timeout=20', `-artifact_prefix=${artifacts}/`,
    ...flags, corpus], { encoding: 'utf8', timeout: (seconds + 300) * 1000, maxBuffer: 256 << 20 });
  const summary = r.stderr.split('\n').filter((l) => /DONE|Done \d+|ORACLE|ERROR|SUMMARY|#\d+ in /.test(l)).slice(0, 40).join('\n');
  return { status: r.status, stderr: r.stderr, summary, seconds: (Date.now() - start) / 1000 };
}
