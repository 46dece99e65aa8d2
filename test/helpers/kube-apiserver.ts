// A real kube-apiserver on a real etcd for tests (deploy/local/kube-apiserver.ts), or a one-line skip where it
// cannot be built (no Go, no module proxy); plus plain HTTPS requests and watches against it (no client library).
import { request } from 'node:https';
import type { Test } from 'tap';
import type { EtcdServer } from '../../deploy/local/etcd-server.js';
import { type KubeApiserver, type KubeTokenUser, kubeApiserverOrSkip as kubeApiserverBin, startKubeApiserver } from '../../deploy/local/kube-apiserver.js';
import { clientEndpoints, startLoopbackEtcd } from './loopback-etcd.js';

/** A build the first time takes about 6 minutes on 2 cores (cold) (`make deps` does it beforehand). */
const FIRST_BUILD_TIMEOUT_MS = 65 * 60_000;

/** A loopback etcd and a real kube-apiserver on it, both torn down at the end of `t`; undefined where the binary
 * cannot be had (the test planned as skipped, with the reason in one line) or the apiserver did not start (a failure
 * of `t`, with the end of its log). Builds the binary first if needed. */
export async function kubeApiserverOrSkip(t: Test, o: { users?: readonly KubeTokenUser[] } = {}): Promise<{ api: KubeApiserver; etcd: EtcdServer } | undefined> {
  let reason = '';
  // Room for a first build, then the run's own timeout again (TAP_TIMEOUT, seconds, set by tap's runner).
  t.setTimeout(FIRST_BUILD_TIMEOUT_MS);
  const bin = await kubeApiserverBin((line) => { reason = line; });
  const runTimeout = Number(process.env.TAP_TIMEOUT);
  if (runTimeout > 0) t.setTimeout(runTimeout * 1000);
  if (!bin) {
    t.plan(0, reason);
    return undefined;
  }
  const etcd = await startLoopbackEtcd(t);
  try {
    const api = await startKubeApiserver({ etcdServers: clientEndpoints(etcd), bin, users: o.users });
    t.teardown(() => api.stop());
    return { api, etcd };
  } catch (e) {
    // A failure, not a skip; and no throw, so that the teardowns (etcd) run.
    t.fail(`the real kube-apiserver did not start: ${(e as Error).message}`);
    return undefined;
  }
}

export interface KubeResponse {
  readonly status: number;
  readonly text: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  readonly json: any;
}

/** One request with a bearer token; a body object is sent as JSON (or as `contentType`, e.g. a strategic-merge patch). */
export function kubeRequest(api: KubeApiserver, token: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<KubeResponse> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' };
    if (data !== undefined) headers['content-type'] = contentType;
    const req = request(`${api.url}${path}`, { method, ca: api.caPem, headers, timeout: 15_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => {
        let json: unknown;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end(data);
  });
}

export interface KubeWatchEvent { readonly type: string; readonly object: any }

export interface KubeWatch {
  /** The HTTP status of the watch request. */
  readonly status: number;
  readonly events: readonly KubeWatchEvent[];
  /** The first event (already seen or still to come) matching `match`; rejects after `timeoutMs`. */
  next(match: (e: KubeWatchEvent) => boolean, timeoutMs?: number): Promise<KubeWatchEvent>;
  close(): void;
}

/** A watch (`?watch=1…` in `path`): the JSON event lines as they come. */
export function kubeWatch(api: KubeApiserver, token: string, path: string): Promise<KubeWatch> {
  return new Promise((resolve, reject) => {
    const events: KubeWatchEvent[] = [];
    const waiters = new Set<() => void>();
    const req = request(`${api.url}${path}`, { ca: api.caPem, headers: { authorization: `Bearer ${token}`, accept: 'application/json' } }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) events.push(JSON.parse(line) as KubeWatchEvent);
        }
        for (const w of waiters) w();
      });
      res.on('error', () => { /* closed by us */ });
      resolve({
        status: res.statusCode ?? 0,
        events,
        next(match, timeoutMs = 15_000) {
          return new Promise((ok, fail) => {
            const check = (): void => {
              const e = events.find(match);
              if (!e) return;
              waiters.delete(check);
              clearTimeout(timer);
              ok(e);
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              fail(new Error(`no matching watch event in ${timeoutMs} ms; seen: ${events.map((e) => `${e.type} ${e.object?.metadata?.name}`).join(', ')}`));
            }, timeoutMs);
            waiters.add(check);
            check();
          });
        },
        close() { req.destroy(); },
      });
    });
    req.on('error', reject); // after a response, only our own close(): a no-op then
    req.end();
  });
}
