// Runs on the daemon's node (flanneld --kube-subnet-mgr, host-gw): creates N Node objects in the Kubernetes
// API, each with a podCIDR and the annotations a flannel node publishes, 16 requests in flight over one
// keep-alive pool; then polls the node's routes until flanneld has programmed all N; then deletes them in
// one request (a label selector) and polls until the routes are gone. Times in ms from the first create.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';

export interface KubeNodesInput {
  readonly server: string;
  readonly caFile: string;
  readonly token: string;
  readonly nodes: number;
  /** Node i (0-based) gets podCIDR 10.244.<firstThird + i>.0/24 and public-ip <publicPrefix>.<firstHost + i>. */
  readonly firstThird: number;
  readonly publicPrefix: string;
  readonly firstHost: number;
  readonly label: string;
  readonly timeoutMs: number;
}
export type KubeNodesOutput =
  | { ok: true; createMs: number; routedMs: number; removedMs: number }
  | { ok: false; error: string };

const ANN = 'flannel.alpha.coreos.com/';
const IN_FLIGHT = 16;
const round = (v: number): number => Math.round(v * 100) / 100;

function api(input: KubeNodesInput, agent: Agent, method: string, path: string, body?: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(`${input.server}${path}`, {
      method, agent,
      headers: { authorization: `Bearer ${input.token}`, accept: 'application/json', ...(data ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) } : {}) },
    }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += d.toString('utf8'); });
      res.on('end', () => ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300 ? resolve() : reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 200)}`))));
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** The pod subnets of `want` that have a route in this namespace's main table. */
function routed(want: ReadonlySet<string>): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['-4', 'route', 'show', 'root', '10.244.0.0/16'], (err, stdout) => {
      if (err) { reject(err); return; }
      resolve(stdout.split('\n').filter((l) => want.has(l.split(' ')[0] ?? '')).length);
    });
  });
}

async function until(what: string, done: () => Promise<boolean>, deadline: number): Promise<void> {
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within the time allowed`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function measure(input: KubeNodesInput): Promise<KubeNodesOutput> {
  const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT, ca: readFileSync(input.caFile) });
  const subnets = Array.from({ length: input.nodes }, (_, i) => `10.244.${input.firstThird + i}.0/24`);
  const want = new Set(subnets);
  const node = (i: number) => ({
    apiVersion: 'v1', kind: 'Node',
    metadata: {
      name: `${input.label}-${i}`, labels: { 'flannel-ts-bench': input.label },
      annotations: {
        [`${ANN}backend-type`]: 'host-gw', [`${ANN}backend-data`]: 'null', [`${ANN}kube-subnet-manager`]: 'true',
        [`${ANN}public-ip`]: `${input.publicPrefix}.${input.firstHost + i}`,
      },
    },
    spec: { podCIDR: subnets[i], podCIDRs: [subnets[i]] },
  });
  try {
    if ((await routed(want)) !== 0) return { ok: false, error: 'routes to the bench subnets exist before their Nodes' };
    const t0 = performance.now();
    const deadline = Date.now() + input.timeoutMs;
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, input.nodes) }, async () => {
      while (next < input.nodes) await api(input, agent, 'POST', '/api/v1/nodes', node(next++));
    }));
    const createMs = performance.now() - t0;
    await until(`${input.nodes} routes`, async () => (await routed(want)) === input.nodes, deadline);
    const routedMs = performance.now() - t0;
    const t1 = performance.now();
    await api(input, agent, 'DELETE', `/api/v1/nodes?labelSelector=${encodeURIComponent(`flannel-ts-bench=${input.label}`)}`);
    await until(`${input.nodes} routes removed`, async () => (await routed(want)) === 0, Date.now() + input.timeoutMs);
    return { ok: true, createMs: round(createMs), routedMs: round(routedMs), removedMs: round(performance.now() - t1) };
  } finally {
    await api(input, agent, 'DELETE', `/api/v1/nodes?labelSelector=${encodeURIComponent(`flannel-ts-bench=${input.label}`)}`).catch(() => {});
    agent.destroy();
  }
}

const input = JSON.parse(process.argv[2] ?? '{}') as KubeNodesInput;
const output = await measure(input).catch((err: unknown): KubeNodesOutput => ({ ok: false, error: err instanceof Error ? err.message : String(err) }));
process.stdout.write(`${JSON.stringify(output)}\n`);
process.exit(0);
