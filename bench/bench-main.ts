// `npm run bench`: measures every flannel-ts data path against raw veth and hand-configured kernel
// VXLAN, plus control-plane timings; prints a table and writes JSON, SVG and text results.
// Everything it creates is torn down at the end, on failure and on Ctrl-C.
import { cpus, loadavg } from 'node:os';
import { runCommand } from '../lib/run-command.js';
import { type BenchOptions, parseOptions, repoRoot, USAGE, UsageError } from './cli/options.js';
import { Progress } from './cli/progress.js';
import { installCrashHandlers, installSignalHandlers, teardownAll } from './cli/teardown.js';
import { dataPathResult } from './report/summarize.js';
import { measureWakeupCost } from './metrics/wakeup-cost.js';
import { readEnvironment } from './report/environment.js';
import { type BenchResult, SCHEMA_ID } from './report/result-types.js';
import { renderTable } from './report/table.js';
import { noiseNotes, writeResults } from './report/write-results.js';
import { type RunOutput, runLocal } from './runner/run-local.js';
import { runUnderlay } from './underlay/run-underlay.js';

const REQUIRED_TOOLS = ['ip', 'bridge', 'iperf3', 'ping', 'etcd', 'etcdctl', 'sysctl', 'getconf'];

async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of REQUIRED_TOOLS) {
    const r = await runCommand('sh', ['-c', `command -v ${tool}`]);
    if (r.code !== 0) missing.push(tool);
  }
  return missing;
}

function buildResult(o: BenchOptions, out: RunOutput, started: Date, env: BenchResult['environment']): BenchResult {
  const datapaths = out.paths.map(dataPathResult);
  const notes = noiseNotes(datapaths, env.loadAvgStart, env.loadAvgEnd, env.cores);
  return {
    schema: SCHEMA_ID,
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    elapsedSec: Math.round((Date.now() - started.getTime()) / 100) / 10,
    environment: env,
    options: {
      mode: o.underlay ? 'underlay' : 'local', datapaths: o.datapaths, metrics: [...o.metrics, ...o.control],
      durationSec: o.durationSec, repeats: o.repeats, pings: o.pings, ...(o.rpcRate ? { rpcRate: o.rpcRate } : {}), peers: o.peers, quick: o.quick,
    },
    datapaths,
    controlPlane: { programPeers: out.programPeers, leaseToPacket: out.leaseToPacket, ...(out.kubeNodes ? { kubeNodes: out.kubeNodes } : {}) },
    notes,
  };
}

async function main(argv: readonly string[]): Promise<number> {
  let o: BenchOptions | undefined;
  try {
    o = parseOptions(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message}\n\n${USAGE}\n`);
    return 64;
  }
  if (!o) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('the benchmark builds network namespaces: run it as root\n');
    return 77;
  }
  const missing = await missingTools();
  if (missing.length > 0) {
    process.stderr.write(`missing tools: ${missing.join(', ')}; run deploy/local/install-deps.sh (or make deps)\n`);
    return 69;
  }
  installSignalHandlers();
  installCrashHandlers();
  const started = new Date();
  const loadStart = loadavg();
  const wakeup = o.underlay ? undefined : await measureWakeupCost(repoRoot(), cpus().length).catch(() => undefined);
  const progress = new Progress(0);
  let out: RunOutput | undefined;
  try {
    out = o.underlay ? await runUnderlay(o, o.underlay, progress) : await runLocal(o, progress);
  } finally {
    progress.close();
    await teardownAll();
  }
  if (!out) return 0; // underlay role b: it served, role a reports
  const result = buildResult(o, out, started, await readEnvironment(loadStart, wakeup));
  const files = writeResults(result, o.out);
  process.stdout.write(`\n${renderTable(result)}\nWrote ${files.join(', ')}\n`);
  return result.datapaths.some((d) => d.status === 'failed') ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2)).catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await teardownAll();
  return 1;
});
