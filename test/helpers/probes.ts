// Probes shared by the reliability and security tests: polling, the daemon's JSON log, /metrics
// scraped inside a node's namespace, continuous pings, route/neighbour deletions seen by
// `ip monitor`, and etcd lease keys. Nothing here changes the cluster.
import type { Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DaemonHandle, LocalCluster } from '../../deploy/local/local-cluster.js';
import { type SpawnedProcess, execIn, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';

export const SUBNETS = '/coreos.com/network/subnets';

/** Polls `fn` until it returns something other than undefined/false; throws after `timeoutMs`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, stepMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

export interface LogLine { level?: string; msg?: string; time?: string; [k: string]: unknown }

/** The daemon's pino JSON lines (anything else is skipped). */
export function logLines(output: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try { out.push(JSON.parse(line) as LogLine); } catch { /* a partial line */ }
  }
  return out;
}

export function running(d: DaemonHandle | SpawnedProcess | undefined): boolean {
  const child = d && ('proc' in d ? d.proc.child : d.child);
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

export function daemon(c: LocalCluster, node: NodeHost): DaemonHandle {
  const d = c.daemons.get(node.name);
  if (!d) throw new Error(`no daemon on ${node.name}`);
  return d;
}

/** Daemon and etcd logs as TAP comments when the test failed (or always with FLANNEL_TEST_LOGS=1). */
export function dumpLogsIfFailed(t: Test, c: LocalCluster, extra: Record<string, string> = {}): void {
  if (t.passing() && process.env.FLANNEL_TEST_LOGS !== '1') return;
  for (const d of c.daemons.values()) {
    t.comment(`---- flanneld on ${d.node.name} (${running(d) ? 'running' : `exited ${d.proc.child.exitCode ?? d.proc.child.signalCode}`}) ----\n${d.proc.output()}`);
  }
  t.comment(`---- etcd ----\n${c.etcd.output()}`);
  for (const [name, text] of Object.entries(extra)) t.comment(`---- ${name} ----\n${text}`);
}

/** GET /metrics from inside the node's namespace, as Prometheus text. */
export async function scrape(node: NodeHost, port: number): Promise<string> {
  const r = await execIn(node.ns, process.execPath, ['-e', `fetch("http://127.0.0.1:${port}/metrics").then(r=>r.text()).then(t=>process.stdout.write(t),e=>{console.error(e.message);process.exit(3)})`]);
  if (r.code !== 0) throw new Error(`GET /metrics on ${node.name}:${port} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** One sample of Prometheus text, e.g. sample(text, 'flanneld_lease_renewals_total{result="success"}'); undefined if absent. */
export function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) return undefined;
  const v = line.slice(name.length + 1).trim();
  return v === '+Inf' ? Infinity : Number(v);
}

export async function metric(node: NodeHost, port: number, name: string): Promise<number | undefined> {
  return sample(await scrape(node, port), name);
}

export interface PingResult { sent: number; received: number; lost: number; summary: string }

/** A continuous ping (`count` echoes every `intervalSec`) from a pod; resolves when it ends. */
export async function pingStream(from: PodHost, to: string, count: number, intervalSec = 0.1): Promise<PingResult> {
  const r = await execIn(from.ns, 'ping', ['-n', '-q', '-i', String(intervalSec), '-c', String(count), '-W', '2', to]);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  const [sent, received] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  return { sent, received, lost: sent - received, summary: r.stdout.trim().split('\n').find((l) => /packets transmitted/.test(l)) ?? `${r.stdout}${r.stderr}` };
}

/** A ping from a pod at `intervalSec` until stop(), which interrupts it (SIGINT) and returns its summary. */
export function startPingStream(from: PodHost, to: string, intervalSec = 0.1): { stop(): Promise<PingResult> } {
  const p = spawnIn(from.ns, 'ping', ['-n', '-q', '-i', String(intervalSec), '-W', '2', to]);
  return {
    async stop() {
      await sleep(2500); // the last echoes get their replies (or their -W 2 timeout)
      await stopProcess(p, 'SIGINT', 5000);
      const out = p.output();
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      const [sent, received] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
      return { sent, received, lost: sent - received, summary: out.trim().split('\n').find((l) => /packets transmitted/.test(l)) ?? out };
    },
  };
}

/** Pings all pairs once, retried until all pass or the deadline; returns the failing pairs of the last try. */
export async function pingAllPairs(c: LocalCluster, pods: readonly PodHost[], timeoutMs: number): Promise<string[]> {
  let failing: string[] = [];
  await until('all-pairs ping', async () => {
    const m = await c.pingMatrix(pods);
    failing = [];
    m.forEach((row, i) => row.forEach((ok, j) => { if (!ok) failing.push(`${pods[i]?.ip} -> ${pods[j]?.ip}`); }));
    return failing.length === 0;
  }, timeoutMs, 300).catch(() => undefined);
  return failing;
}

/** `ip monitor route neigh` in a namespace; stop() returns the "Deleted" lines it saw. */
export function watchDeletions(ns: string): { stop(): Promise<string[]> } {
  const p = spawnIn(ns, 'ip', ['monitor', 'route', 'neigh']);
  return {
    async stop() {
      await stopProcess(p, 'SIGTERM', 2000);
      // Routes, and neighbours flanneld owns (PERMANENT). The kernel's own cache entries (ARP entries
      // aging out, multicast NOARP entries on cni0) come and go by themselves and say nothing about us.
      return p.output().split('\n').filter((l) => l.startsWith('Deleted') && (!l.includes(' lladdr ') || l.includes('PERMANENT')));
    },
  };
}

/** "10.244.7.1/24" (FLANNEL_SUBNET) → "10.244.7.0/24". */
export function networkOf(flannelSubnet: string): string {
  const [ip, len] = flannelSubnet.split('/') as [string, string];
  const o = ip.split('.').map(Number);
  const n = (((o[0] as number) << 24) >>> 0) + ((o[1] as number) << 16) + ((o[2] as number) << 8) + (o[3] as number) - 1;
  const mask = len === '0' ? 0 : (~0 << (32 - Number(len))) >>> 0;
  const net = (n & mask) >>> 0;
  return `${[net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join('.')}/${len}`;
}

/** The etcd key of a node's lease, from its FLANNEL_SUBNET. */
export const leaseKeyOf = (flannelSubnet: string): string => `${SUBNETS}/${networkOf(flannelSubnet).replace('/', '-')}`;

/** The value flannel's host-gw writes for a node. */
export const hostGwValue = (publicIp: string): string => `{"PublicIP":"${publicIp}","PublicIPv6":null,"BackendType":"host-gw"}`;

/** A key's value, or undefined when it is missing (read at `ip`, default the first listen address). */
export async function keyValue(c: LocalCluster, key: string, ip?: string): Promise<string | undefined> {
  const out = await c.etcd.ctlChecked(['get', key, '--print-value-only'], ip);
  return out === '' ? undefined : out.replace(/\n$/, '');
}

/** The etcd lease id holding `key` (decimal, as etcd prints it), 0n for none, undefined when the key is missing. */
export async function leaseIdOf(c: LocalCluster, key: string): Promise<bigint | undefined> {
  const out = await c.etcd.ctlChecked(['get', '-w', 'json', key]);
  if (!/"kvs":/.test(out)) return undefined;
  const m = /"lease":(\d+)/.exec(out); // parsed from the text: int64 ids lose precision in JSON.parse
  return m ? BigInt(m[1] as string) : 0n;
}

export async function timeToLive(c: LocalCluster, id: bigint): Promise<{ granted: number; remaining: number } | undefined> {
  const out = await c.etcd.ctlChecked(['lease', 'timetolive', id.toString(16)]);
  const m = /granted with TTL\((\d+)s\), remaining(?: TTL)?\((-?\d+)s\)/.exec(out);
  return m ? { granted: Number(m[1]), remaining: Number(m[2]) } : undefined;
}

/**
 * The etcd lease holding `key` and its TTL. A renewal re-puts the key on a fresh etcd lease and then
 * revokes the old one, so a lease read just before a renewal can be gone a moment later: then the
 * key is read again (a few times), which the renewal has by then moved to its new lease.
 */
export async function liveLeaseOf(c: LocalCluster, key: string): Promise<{ id: bigint; granted: number; remaining: number } | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const id = await leaseIdOf(c, key);
    if (!id) return undefined;
    const ttl = await timeToLive(c, id);
    if (ttl && ttl.remaining >= 0) return { id, ...ttl };
  }
  return undefined;
}

/**
 * Samples a key's value every `stepMs` until stop(); returns the distinct values in order with the
 * ms (since start) each was first seen, "<missing>" for a missing key.
 */
export function keyHistory(c: LocalCluster, key: string, stepMs = 250): { stop(): Promise<Array<{ atMs: number; value: string }>> } {
  const t0 = Date.now();
  const seen: Array<{ atMs: number; value: string }> = [];
  let done = false;
  const loop = (async () => {
    while (!done) {
      const r = await c.etcd.ctl(['get', key, '--print-value-only']);
      if (r.code === 0) {
        const value = r.stdout.trim() || '<missing>';
        if (seen.at(-1)?.value !== value) seen.push({ atMs: Date.now() - t0, value });
      }
      await sleep(stepMs);
    }
  })();
  return { async stop() { done = true; await loop; return seen; } };
}

/** Our host-gw routes on a node (routing protocol 241). */
export async function ownRoutes(node: NodeHost): Promise<string[]> {
  const r = await execIn(node.ns, 'ip', ['route', 'show', 'proto', '241']);
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}
