// Runs on the daemon's node: pings a not-yet-leased address from a pod every millisecond, creates the
// peer's lease in etcd (on an etcd lease, as a node would), and reports the time from the put to the
// first echo reply (ping -D stamps each reply with the wall clock). Removes the lease afterwards.
import { spawn } from 'node:child_process';
import { Etcd3 } from 'etcd3';

export interface LeaseProbeInput {
  readonly etcd: string;
  readonly key: string;
  readonly value: string;
  readonly podNs: string;
  readonly target: string;
  readonly timeoutMs: number;
}
export type LeaseProbeOutput = { ok: true; ms: number; putMs: number } | { ok: false; error: string };

const REPLY = /^\[(\d+\.\d+)\] \d+ bytes from/m;
const wallMs = (): number => performance.timeOrigin + performance.now();

async function probe(input: LeaseProbeInput): Promise<LeaseProbeOutput> {
  const client = new Etcd3({ hosts: input.etcd });
  const ping = spawn('ip', ['netns', 'exec', input.podNs, 'ping', '-D', '-n', '-i', '0.001', '-W', '1', input.target], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  ping.stdout.on('data', (d: Buffer) => { out += d.toString('utf8'); });
  const lease = client.lease(600, { autoKeepAlive: false });
  try {
    await client.get(input.key).string();
    await lease.grant();
    await new Promise((r) => setTimeout(r, 300));
    if (REPLY.test(out)) return { ok: false, error: `${input.target} answered before its lease existed` };
    const t0 = wallMs();
    await lease.put(input.key).value(input.value);
    const putMs = wallMs() - t0;
    const deadline = Date.now() + input.timeoutMs;
    for (;;) {
      const m = REPLY.exec(out);
      if (m) return { ok: true, ms: Math.round((Number(m[1]) * 1000 - t0) * 100) / 100, putMs: Math.round(putMs * 100) / 100 };
      if (Date.now() > deadline) return { ok: false, error: `no reply from ${input.target} within ${input.timeoutMs} ms of the lease` };
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    ping.kill('SIGKILL');
    await lease.revoke().catch(() => {});
    client.close();
  }
}

const input = JSON.parse(process.argv[2] ?? '{}') as LeaseProbeInput;
const output = await probe(input).catch((err: unknown): LeaseProbeOutput => ({ ok: false, error: err instanceof Error ? err.message : String(err) }));
process.stdout.write(`${JSON.stringify(output)}\n`);
process.exit(0);
