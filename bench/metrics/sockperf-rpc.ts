// UDP request/response latency with sockperf (Debian's sockperf 3.7): a server at the server end echoes
// 64-byte messages, the client sends the next one as soon as the reply is in (ping-pong), or paced at a
// given rate (--rpc-rate, sockperf --mps: pauses between round trips, as a lightly loaded service sees), for a few
// seconds and reports the full round trip (--full-rtt) percentiles. Unlike ping, whose echo the
// kernel answers, both ends are user-space processes that sleep in recvfrom(), as an RPC's are.
import { spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { Endpoint } from '../datapaths/catalog.js';
import { execOn, withTimeout } from '../lib/exec.js';
import { round } from '../lib/stats.js';
import type { RpcRaw } from '../report/result-types.js';

const PORT = 11111;
const MESSAGE_BYTES = 64;

/** Percentiles and the observation count of sockperf's summary, in µs. */
export function parseSockperf(output: string): Omit<RpcRaw, 'seconds'> {
  const text = output.replace(/\x1b\[[0-9;]*m/g, '');
  const pct = (p: string): number | undefined => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s*([\\d.]+)`).exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const observations = Number(/Total (\d+) observations/.exec(text)?.[1] ?? Number.NaN);
  const p50 = pct('50.000');
  const p99 = pct('99.000');
  if (!Number.isFinite(observations) || p50 === undefined || p99 === undefined) {
    throw new Error(`sockperf printed no percentiles: ${text.trim().split('\n').slice(-3).join(' / ').slice(0, 300)}`);
  }
  const dropped = Number(/# dropped messages = (\d+)/.exec(text)?.[1] ?? 0);
  return { observations, dropped, p50Us: round(p50, 1), p99Us: round(p99, 1) };
}

/** `rate` requests per second (sockperf --mps), 0: each as soon as the last reply is in. */
export async function sockperfRpc(client: Endpoint, server: Endpoint, seconds: number, rate = 0): Promise<RpcRaw> {
  const proc = spawnIn(server.ns, 'sockperf', ['server', '-i', server.ip, '-p', String(PORT)]);
  try {
    const deadline = Date.now() + 10_000;
    while (!/IP = /.test(proc.output())) {
      if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`sockperf server did not start: ${proc.output().trim().slice(-200)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const args = ['ping-pong', '-i', server.ip, '-p', String(PORT), '-t', String(seconds), '-m', String(MESSAGE_BYTES), '--full-rtt', ...(rate ? [`--mps=${rate}`] : [])];
    const r = await withTimeout(execOn(client.ns, 'sockperf', args), (seconds + 20) * 1000, 'sockperf client');
    return { ...parseSockperf(r.stdout + r.stderr), seconds };
  } finally {
    await stopProcess(proc, 'SIGKILL', 2000);
  }
}
