// A real kube-apiserver (k8s.io/kubernetes at the release pinned in deploy/local/kube-apiserver/go.mod), built from
// its published modules by go-tool.ts through our own ten-line main (deploy/local/kube-apiserver/main.go), and run
// against a real etcd for the tests of the Kubernetes subnet manager: no fake API server, no client-side fake.
// startKubeApiserver() runs one in a namespace or on loopback with everything in a temporary directory of its own:
// a self-signed serving cert (written by the apiserver into --cert-dir), a service-account RSA key (Node's crypto),
// a token file (an admin in system:masters plus the caller's users) and RBAC; it returns once /readyz answers.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../lib/run-command.js';
import { type GoTool, type GoToolBinary, buildGoTool, goToolOrSkip } from './go-tool.js';
import { type SpawnedProcess, runTag, spawnIn, stopProcess } from './netns.js';

export const KUBERNETES_MODULE = 'k8s.io/kubernetes';
export const KUBE_APISERVER_TOOL: GoTool = {
  dir: 'kube-apiserver', module: KUBERNETES_MODULE, pkg: '.', name: 'kube-apiserver', cgo: false,
  // A cold build compiles ~2,000 packages: about 6 minutes on 2 cores; 60 minutes is the limit.
  buildTimeoutMs: 60 * 60_000,
  // Stamped as Kubernetes' own build stamps it, so /version names the release; -s -w as its release builds.
  ldflags: (version) => {
    const [major, minor] = version.replace(/^v/, '').split('.');
    const v = 'k8s.io/component-base/version';
    return `-s -w -X ${v}.gitVersion=${version} -X ${v}.gitMajor=${major} -X ${v}.gitMinor=${minor} -X ${v}.gitTreeState=clean`;
  },
};

/** The pinned kube-apiserver: the cached binary, or built now (long the first time); or why not. Never throws. */
export function buildKubeApiserver(): Promise<GoToolBinary> { return buildGoTool(KUBE_APISERVER_TOOL); }

/** kube-apiserver's path, building it if needed; undefined (and one line on stderr saying why) where it cannot be had. */
export function kubeApiserverOrSkip(log?: (line: string) => void): Promise<string | undefined> {
  return goToolOrSkip(KUBE_APISERVER_TOOL, 'the real kube-apiserver', log);
}

/** A user of the token file (`token,user,uid,"groups"`). */
export interface KubeTokenUser {
  readonly user: string;
  /** Random when not given. */
  readonly token?: string;
  readonly groups?: readonly string[];
}

export interface KubeApiserverOptions {
  /** etcd client URLs, e.g. ['http://127.0.0.1:2379']. */
  readonly etcdServers: readonly string[];
  /** Namespace to run in; undefined runs on this host's loopback. */
  readonly ns?: string;
  /** Address to serve on (and advertise); 127.0.0.1 unless given. */
  readonly address?: string;
  /** Secure port; a free one on loopback, a random high one in a namespace, unless given. */
  readonly port?: number;
  /** Users besides the admin, e.g. a flannel service-account-like user bound to flannel's ClusterRole. */
  readonly users?: readonly KubeTokenUser[];
  /** Where in etcd the objects go; unique to this run unless given, so apiservers can share one etcd. */
  readonly etcdPrefix?: string;
  /** How long to wait for /readyz; 3 minutes unless given. */
  readonly readyTimeoutMs?: number;
  /** The binary; built (or taken from the cache) unless given. */
  readonly bin?: string;
  /** More kube-apiserver flags. */
  readonly extraArgs?: readonly string[];
}

export interface KubeApiserver {
  /** https://<address>:<port> */
  readonly url: string;
  readonly address: string;
  readonly port: number;
  /** The --cert-dir the apiserver wrote its self-signed serving cert into (apiserver.crt: the cert then its CA). */
  readonly certDir: string;
  /** The serving cert's chain as PEM: what a client trusts (`ca`) to talk to this apiserver. */
  readonly caPem: string;
  /** The same as a file. */
  readonly caFile: string;
  readonly adminToken: string;
  /** Every user's token (the admin's too), by user name. */
  readonly tokens: Readonly<Record<string, string>>;
  readonly etcdPrefix: string;
  /** Milliseconds from spawn to the first ready /readyz. */
  readonly startupMs: number;
  /** Writes a kubeconfig for a token (a user name or the token itself) into `file` (in the run's directory unless
   * given; that one is removed on stop) and returns its path. */
  writeKubeconfig(userOrToken: string, file?: string): string;
  /** The apiserver's log so far. */
  output(): string;
  /** Stops the apiserver process (SIGTERM, then SIGKILL) but keeps its directory: start() runs it again. */
  kill(): Promise<void>;
  /** Runs a killed apiserver again with the same flags, serving cert and tokens; resolves with the ms until /readyz. */
  start(): Promise<number>;
  /** Stops the apiserver (SIGTERM, then SIGKILL) and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** A kubeconfig (YAML) for one server, CA and bearer token: what `--kubeconfig-file` reads. */
export function kubeconfigYaml(o: { server: string; caPem: string; token: string; name?: string }): string {
  const name = o.name ?? 'flannel-ts';
  const q = (s: string): string => JSON.stringify(s); // a JSON string is a YAML double-quoted scalar
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${q(name)}`,
    '  cluster:',
    `    server: ${q(o.server)}`,
    `    certificate-authority-data: ${q(Buffer.from(o.caPem).toString('base64'))}`,
    'users:',
    `- name: ${q(name)}`,
    '  user:',
    `    token: ${q(o.token)}`,
    'contexts:',
    `- name: ${q(name)}`,
    '  context:',
    `    cluster: ${q(name)}`,
    `    user: ${q(name)}`,
    `current-context: ${q(name)}`,
    '',
  ].join('\n');
}

/** Writes kubeconfigYaml() to `file` (mode 0600, it holds a token) and returns `file`. */
export function writeKubeconfigFile(file: string, o: { server: string; caPem: string; token: string; name?: string }): string {
  writeFileSync(file, kubeconfigYaml(o), { mode: 0o600 });
  return file;
}

const ADMIN_USER = 'flannel-ts-admin';

/** Starts a real kube-apiserver against the given etcd and waits until /readyz answers with the admin token.
 * On any failure the process is stopped and the directory removed before the error is thrown (with the log's end). */
export async function startKubeApiserver(o: KubeApiserverOptions): Promise<KubeApiserver> {
  let bin = o.bin;
  if (!bin) {
    const b = await buildKubeApiserver();
    if (!b.ok) throw new Error(`the real kube-apiserver cannot be had: ${b.reason}`);
    bin = b.bin;
  }
  const tag = runTag('k');
  const dir = mkdtempSync(join(tmpdir(), `flannel-ts-kube-apiserver-${tag}-`));
  let proc: SpawnedProcess | undefined;
  const killOnExit = (): void => { proc?.child.kill('SIGKILL'); };
  const cleanup = async (): Promise<void> => {
    process.off('exit', killOnExit);
    if (proc) await stopProcess(proc, 'SIGTERM', 10_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const address = o.address ?? '127.0.0.1';
    const port = o.port ?? (o.ns ? 30000 + Math.floor(Math.random() * 20000) : await freePort(address));
    const url = `https://${address.includes(':') ? `[${address}]` : address}:${port}`;
    const etcdPrefix = o.etcdPrefix ?? `/registry-${tag}`;
    const certDir = join(dir, 'certs');

    // The service-account key pair (tokens are signed with the private key, checked with the public one).
    const { privateKey, publicKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    const saKey = join(dir, 'sa.key');
    const saPub = join(dir, 'sa.pub');
    writeFileSync(saKey, privateKey, { mode: 0o600 });
    writeFileSync(saPub, publicKey);

    // The token file: the admin (system:masters, so RBAC allows everything) and the caller's users.
    const users: KubeTokenUser[] = [{ user: ADMIN_USER, groups: ['system:masters'] }, ...(o.users ?? [])];
    const tokens: Record<string, string> = {};
    const lines: string[] = [];
    for (const [i, u] of users.entries()) {
      if (!/^[A-Za-z0-9:._@-]+$/.test(u.user)) throw new Error(`user name ${JSON.stringify(u.user)} does not fit a token file`);
      if (tokens[u.user]) throw new Error(`user ${u.user} given twice`);
      const token = u.token ?? randomBytes(24).toString('hex');
      tokens[u.user] = token;
      const groups = (u.groups ?? []).join(',');
      lines.push(`${token},${u.user},uid-${i}${groups ? `,"${groups}"` : ''}`);
    }
    const tokenFile = join(dir, 'tokens.csv');
    writeFileSync(tokenFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    const adminToken = tokens[ADMIN_USER] as string;

    const args = [
      `--etcd-servers=${o.etcdServers.join(',')}`,
      `--etcd-prefix=${etcdPrefix}`,
      `--cert-dir=${certDir}`,
      `--advertise-address=${address}`,
      `--bind-address=${address}`,
      `--secure-port=${port}`,
      '--service-cluster-ip-range=10.96.0.0/24',
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      `--token-auth-file=${tokenFile}`,
      '--authorization-mode=RBAC',
      '--profiling=false',
      // The endpoint reconciler (the `kubernetes` Service's endpoints) refuses a loopback advertise address.
      ...(isLoopback(address) ? ['--endpoint-reconciler-type=none'] : []),
      ...(o.extraArgs ?? []),
    ];
    const caFile = join(certDir, 'apiserver.crt');
    let caPem = '';
    // Spawns the apiserver and waits for /readyz: at start, and again after kill() (same flags, cert, tokens, etcd).
    const launch = async (): Promise<number> => {
      const started = Date.now();
      const p = spawnIn(o.ns, bin as string, args);
      proc = p;
      const deadline = started + (o.readyTimeoutMs ?? 180_000);
      let last = 'no answer yet';
      for (;;) {
        if (p.child.exitCode !== null || p.child.signalCode !== null) {
          throw new Error(`kube-apiserver exited (${p.child.exitCode ?? p.child.signalCode}) before it was ready`);
        }
        if (Date.now() > deadline) throw new Error(`kube-apiserver not ready after ${Math.round((Date.now() - started) / 1000)} s: ${last}`);
        // Read each time until ready: the apiserver writes it once at start, and a read may catch it half written.
        caPem = existsSync(caFile) ? readFileSync(caFile, 'utf8') : '';
        if (caPem.includes('-----END CERTIFICATE-----')) {
          const r = await readyz(o.ns, url, caPem, caFile, adminToken);
          if (r.ok) break;
          last = r.what;
        }
        await sleep(250);
      }
      return Date.now() - started;
    };
    process.on('exit', killOnExit);
    const startupMs = await launch();
    let earlierLogs = '';
    let stopped: Promise<void> | undefined;
    return {
      url, address, port, certDir, caPem, caFile, adminToken, tokens, etcdPrefix, startupMs,
      writeKubeconfig(userOrToken, file) {
        const token = tokens[userOrToken] ?? userOrToken;
        const name = tokens[userOrToken] ? userOrToken.replace(/[^A-Za-z0-9._-]/g, '-') : 'token';
        return writeKubeconfigFile(file ?? join(dir, `kubeconfig-${name}-${randomBytes(3).toString('hex')}`), { server: url, caPem, token });
      },
      async kill() {
        if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
        earlierLogs += proc.output();
        await stopProcess(proc, 'SIGTERM', 10_000);
      },
      async start() {
        if (stopped) throw new Error('kube-apiserver: stopped for good');
        if (proc && proc.child.exitCode === null && proc.child.signalCode === null) return 0;
        return launch();
      },
      output: () => earlierLogs + (proc?.output() ?? ''),
      stop: () => (stopped ??= cleanup()),
    };
  } catch (e) {
    const log = proc?.output().trim().split('\n').slice(-20).join('\n') ?? '';
    await cleanup();
    throw new Error(`${(e as Error).message}${log ? `\n--- kube-apiserver log (end) ---\n${log}` : ''}`, { cause: e });
  }
}

/** One GET /readyz with the admin token: in-process on this host, through curl inside a namespace. */
async function readyz(ns: string | undefined, url: string, caPem: string, caFile: string, token: string): Promise<{ ok: boolean; what: string }> {
  if (ns) {
    const r = await runCommand('ip', ['netns', 'exec', ns, 'curl', '-sS', '--max-time', '5', '--cacert', caFile,
      '-H', `Authorization: Bearer ${token}`, '-o', '/dev/null', '-w', '%{http_code}', `${url}/readyz`]);
    return { ok: r.stdout.trim() === '200', what: `/readyz: ${r.stdout.trim() || r.stderr.trim()}` };
  }
  return new Promise((resolve) => {
    const req = request(`${url}/readyz`, { ca: caPem, headers: { authorization: `Bearer ${token}` }, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ ok: res.statusCode === 200, what: `/readyz ${res.statusCode}: ${body.trim().split('\n').filter((l) => l.includes('failed')).join('; ').slice(0, 300)}` }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ ok: false, what: `/readyz: ${e.message}` }));
    req.end();
  });
}

const isLoopback = (address: string): boolean => address === '::1' || address.startsWith('127.');

/** A port free on `address` now (the kernel's pick); the apiserver binds it a moment later. */
function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, address, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}
