// A thin Kubernetes API client over node:https, just what flannel's Kubernetes subnet manager needs: GET a Node
// or a Pod, LIST and WATCH Nodes, PATCH nodes/{name}/status (strategic merge). Its config comes, as client-go's
// BuildConfigFromFlags gives flannel's, from a kubeconfig file (server, CA, token or client cert; its
// current-context), from a bare --kube-api-url (no credentials, no CA), or from the in-cluster service account.
// Every failure is a FlannelError whose code says what to do: FLN_ERR_KUBE_UNAVAILABLE (retry),
// FLN_ERR_KUBE_FORBIDDEN (fix credentials or RBAC; the message names the permission), FLN_ERR_KUBE_NOT_FOUND,
// FLN_ERR_KUBE_WATCH_GONE (list again), FLN_ERR_KUBE_API, FLN_ERR_KUBE_CONFIG.
import { readFileSync } from 'node:fs';
import { type IncomingMessage, Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { dirname, isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { FlannelError, errorMessage } from '../../lib/errors.js';
import { isPlainObject } from '../../lib/json-fields.js';

export const IN_CLUSTER_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Where and how to reach the API server. */
export interface KubeClientConfig {
  /** https://host:port (or http:// for a bare URL). */
  readonly server: string;
  readonly ca?: string;
  readonly token?: string;
  /** A file holding the token, read again before each request (service-account tokens rotate). */
  readonly tokenFile?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly insecureSkipTlsVerify?: boolean;
  /** Where this config came from, for messages. */
  readonly source: string;
}

export interface KubeConfigSources {
  readonly apiUrl: string;
  readonly kubeconfigFile: string;
  readonly env?: NodeJS.ProcessEnv;
  /** The service-account directory (tests point it elsewhere). */
  readonly inClusterDir?: string;
}

function configError(message: string, cause?: unknown): FlannelError {
  return new FlannelError('FLN_ERR_KUBE_CONFIG', message, cause === undefined ? {} : { cause });
}

/**
 * client-go's BuildConfigFromFlags as flannel calls it: a kubeconfig file (with --kube-api-url overriding its
 * server), else a bare URL, else the in-cluster config.
 */
export function loadKubeClientConfig(o: KubeConfigSources): KubeClientConfig {
  const env = o.env ?? process.env;
  if (o.kubeconfigFile) {
    const cfg = readKubeconfig(o.kubeconfigFile);
    return o.apiUrl ? { ...cfg, server: o.apiUrl.replace(/\/+$/, '') } : cfg;
  }
  if (o.apiUrl) return { server: o.apiUrl.replace(/\/+$/, ''), source: `--kube-api-url ${o.apiUrl}` };
  const dir = o.inClusterDir ?? IN_CLUSTER_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw configError('no Kubernetes API to talk to: pass --kubeconfig-file or --kube-api-url, or run in a pod ' +
      '(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)');
  }
  const tokenFile = join(dir, 'token');
  let ca: string;
  try {
    readFileSync(tokenFile, 'utf8');
    ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  } catch (err) {
    throw configError(`in-cluster config: cannot read the service-account token and CA under ${dir} (${errorMessage(err)}); ` +
      'mount the service account or pass --kubeconfig-file', err);
  }
  return { server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`, ca, tokenFile, source: `in-cluster service account (${dir})` };
}

/** A kubeconfig's current context: its cluster's server and CA, its user's token or client certificate. */
export function readKubeconfig(file: string): KubeClientConfig {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw configError(`cannot read the kubeconfig ${file}: ${errorMessage(err)}`, err);
  }
  const bad = (what: string): FlannelError => configError(`invalid kubeconfig ${file}: ${what}`);
  if (!isPlainObject(doc)) throw bad('not a YAML mapping');
  const named = (list: unknown, name: unknown, field: string): Record<string, unknown> | undefined => {
    if (!Array.isArray(list)) return undefined;
    const entry = list.find((e) => isPlainObject(e) && e.name === name) as Record<string, unknown> | undefined;
    return entry && isPlainObject(entry[field]) ? entry[field] as Record<string, unknown> : undefined;
  };
  const ctxName = doc['current-context'] ?? (Array.isArray(doc.contexts) && doc.contexts.length === 1 ? (doc.contexts[0] as { name?: unknown }).name : undefined);
  if (typeof ctxName !== 'string' || ctxName === '') throw bad('no current-context');
  const ctx = named(doc.contexts, ctxName, 'context');
  if (!ctx) throw bad(`current-context ${JSON.stringify(ctxName)} names no context`);
  const cluster = named(doc.clusters, ctx.cluster, 'cluster');
  if (!cluster || typeof cluster.server !== 'string' || cluster.server === '') throw bad(`context ${JSON.stringify(ctxName)}: its cluster has no server`);
  const user = named(doc.users, ctx.user, 'user') ?? {};
  const base = dirname(file);
  const data = (inline: unknown, path: unknown, what: string): string | undefined => {
    if (typeof inline === 'string' && inline !== '') return Buffer.from(inline, 'base64').toString('utf8');
    if (typeof path !== 'string' || path === '') return undefined;
    const p = isAbsolute(path) ? path : join(base, path);
    try { return readFileSync(p, 'utf8'); } catch (err) { throw configError(`kubeconfig ${file}: cannot read ${what} ${p}: ${errorMessage(err)}`, err); }
  };
  const ca = data(cluster['certificate-authority-data'], cluster['certificate-authority'], 'certificate-authority');
  const cert = data(user['client-certificate-data'], user['client-certificate'], 'client-certificate');
  const key = data(user['client-key-data'], user['client-key'], 'client-key');
  if (!cert !== !key) throw bad('client-certificate and client-key must be given together');
  const token = typeof user.token === 'string' && user.token !== '' ? user.token : undefined;
  const tokenFile = typeof user.tokenFile === 'string' && user.tokenFile !== '' ? (isAbsolute(user.tokenFile) ? user.tokenFile : join(base, user.tokenFile)) : undefined;
  return {
    server: cluster.server.replace(/\/+$/, ''),
    ...(ca ? { ca } : {}), ...(token ? { token } : {}), ...(tokenFile && !token ? { tokenFile } : {}),
    ...(cert && key ? { cert, key } : {}),
    ...(cluster['insecure-skip-tls-verify'] === true ? { insecureSkipTlsVerify: true } : {}),
    source: `kubeconfig ${file} (context ${ctxName})`,
  };
}

// The few fields of the API objects we read.
export interface KubeObjectMeta {
  readonly name: string;
  readonly resourceVersion?: string;
  readonly annotations?: Readonly<Record<string, string>>;
}
export interface KubeNodeCondition { readonly type: string; readonly status: string; readonly reason?: string; readonly message?: string }
export interface KubeNode {
  readonly metadata: KubeObjectMeta;
  readonly spec?: { readonly podCIDR?: string; readonly podCIDRs?: readonly string[] };
  readonly status?: { readonly conditions?: readonly KubeNodeCondition[] };
}
export interface KubePod { readonly metadata: KubeObjectMeta; readonly spec?: { readonly nodeName?: string } }
export interface KubeNodeList { readonly items: readonly KubeNode[]; readonly resourceVersion: string }
export type KubeWatchEvent =
  | { readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'; readonly node: KubeNode }
  | { readonly type: 'BOOKMARK'; readonly resourceVersion: string };

export interface NodeWatchHandlers {
  onEvent(ev: KubeWatchEvent): void;
  /** The watch was accepted (HTTP 200): the stream is live. */
  onEstablished?(): void;
}

/** How a watch ended: the server closed it (timeout) or we stopped it. Errors (410 Gone included) reject. */
export type WatchEnd = 'ended' | 'stopped';

const REQUEST_TIMEOUT_MS = 15_000;

/** Node's codes for a server certificate we cannot trust or that does not name the server. */
const UNTRUSTED_CERT_CODES = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

export class KubeClient {
  private readonly agent: HttpsAgent | HttpAgent;
  private readonly https: boolean;

  constructor(readonly config: KubeClientConfig) {
    let url: URL;
    try { url = new URL(config.server); } catch { throw configError(`${config.source}: server ${JSON.stringify(config.server)} is not a URL`); }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw configError(`${config.source}: server ${config.server} is neither https:// nor http://`);
    this.https = url.protocol === 'https:';
    this.agent = this.https
      ? new HttpsAgent({ keepAlive: true, ...(config.ca ? { ca: config.ca } : {}), ...(config.cert ? { cert: config.cert, key: config.key } : {}),
        rejectUnauthorized: !config.insecureSkipTlsVerify })
      : new HttpAgent({ keepAlive: true });
  }

  getNode(name: string): Promise<KubeNode> {
    return this.json('GET', `/api/v1/nodes/${encodeURIComponent(name)}`, 'nodes get', `Node ${name}`) as Promise<KubeNode>;
  }

  getPod(namespace: string, name: string): Promise<KubePod> {
    return this.json('GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`, 'pods get', `Pod ${namespace}/${name}`) as Promise<KubePod>;
  }

  async listNodes(): Promise<KubeNodeList> {
    const r = await this.json('GET', '/api/v1/nodes', 'nodes list', 'Nodes') as { items?: KubeNode[]; metadata?: { resourceVersion?: string } };
    if (!Array.isArray(r.items) || typeof r.metadata?.resourceVersion !== 'string') {
      throw new FlannelError('FLN_ERR_KUBE_API', `${this.config.server}: a Node list without items or resourceVersion`);
    }
    return { items: r.items, resourceVersion: r.metadata.resourceVersion };
  }

  /** A strategic-merge patch of the node's status subresource (annotations and conditions both go through it). */
  patchNodeStatus(name: string, patch: unknown): Promise<KubeNode> {
    return this.json('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}/status`, 'nodes/status patch', `Node ${name}`,
      JSON.stringify(patch), 'application/strategic-merge-patch+json') as Promise<KubeNode>;
  }

  /**
   * Watches Nodes from `resourceVersion` until the server ends the stream (`ended`, after about `timeoutSeconds`)
   * or the signal fires (`stopped`). Rejects with FLN_ERR_KUBE_WATCH_GONE when the version is too old (410, at
   * start or as an ERROR event), FLN_ERR_KUBE_UNAVAILABLE when the connection breaks.
   */
  async watchNodes(resourceVersion: string, h: NodeWatchHandlers, signal: AbortSignal, timeoutSeconds = 300): Promise<WatchEnd> {
    if (signal.aborted) return 'stopped';
    const path = `/api/v1/nodes?watch=1&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(resourceVersion)}&timeoutSeconds=${timeoutSeconds}`;
    const res = await this.send('GET', path, undefined, undefined, { signal, timeoutMs: REQUEST_TIMEOUT_MS, headersOnly: true });
    if (!res.res) return 'stopped';
    const msg = res.res;
    if (msg.statusCode !== 200) {
      const body = await readBody(msg).catch(() => '');
      throw await this.refusal(msg.statusCode ?? 0, body, 'nodes watch', 'Nodes', 'GET', path);
    }
    h.onEstablished?.();
    msg.socket?.setKeepAlive(true, 15_000);
    return new Promise<WatchEnd>((resolve, reject) => {
      let buf = '';
      let done = false;
      const finish = (err: FlannelError | undefined, end: WatchEnd = 'ended'): void => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        if (err) { msg.destroy(); reject(err); } else resolve(end);
      };
      const onAbort = (): void => { msg.destroy(); finish(undefined, 'stopped'); };
      signal.addEventListener('abort', onAbort, { once: true });
      msg.setEncoding('utf8');
      msg.on('data', (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf('\n'); nl >= 0 && !done; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          let ev: { type?: string; object?: Record<string, any> };
          try { ev = JSON.parse(line) as typeof ev; } catch {
            finish(new FlannelError('FLN_ERR_KUBE_API', `${this.config.server}: a Node watch event that is not JSON: ${line.slice(0, 120)}`));
            return;
          }
          if (ev.type === 'ERROR') {
            const code = Number(ev.object?.code);
            finish(code === 410
              ? new FlannelError('FLN_ERR_KUBE_WATCH_GONE', `Node watch: resourceVersion ${resourceVersion} is too old (410 Gone): ${ev.object?.message ?? ''}`)
              : new FlannelError(code >= 500 ? 'FLN_ERR_KUBE_UNAVAILABLE' : 'FLN_ERR_KUBE_API', `Node watch error ${code}: ${ev.object?.message ?? line.slice(0, 200)}`));
            return;
          }
          if (ev.type === 'BOOKMARK') {
            const rv = ev.object?.metadata?.resourceVersion;
            if (typeof rv === 'string') h.onEvent({ type: 'BOOKMARK', resourceVersion: rv });
            continue;
          }
          if ((ev.type === 'ADDED' || ev.type === 'MODIFIED' || ev.type === 'DELETED') && ev.object && typeof ev.object.metadata?.name === 'string') {
            h.onEvent({ type: ev.type, node: ev.object as unknown as KubeNode });
          }
        }
      });
      msg.on('end', () => finish(undefined, 'ended'));
      msg.on('error', (err) => finish(signal.aborted ? undefined : new FlannelError('FLN_ERR_KUBE_UNAVAILABLE', `Node watch on ${this.config.server} broke: ${err.message}`, { cause: err }), 'stopped'));
      msg.on('close', () => finish(undefined, signal.aborted ? 'stopped' : 'ended'));
    });
  }

  close(): void {
    this.agent.destroy();
  }

  private async json(method: string, path: string, permission: string, what: string, body?: string, contentType?: string): Promise<unknown> {
    const r = await this.send(method, path, body, contentType, { timeoutMs: REQUEST_TIMEOUT_MS });
    const status = r.status ?? 0;
    if (status < 200 || status > 299) throw await this.refusal(status, r.text ?? '', permission, what, method, path);
    try {
      return JSON.parse(r.text ?? '');
    } catch {
      throw new FlannelError('FLN_ERR_KUBE_API', `${method} ${this.config.server}${path}: an answer that is not JSON: ${(r.text ?? '').slice(0, 120)}`);
    }
  }

  /**
   * statusError, except that a 401 or 403 from a server whose /readyz is not ok is FLN_ERR_KUBE_UNAVAILABLE: a
   * (re)starting kube-apiserver serves requests before its RBAC caches are filled and refuses them meanwhile.
   */
  private async refusal(status: number, body: string, permission: string, what: string, method: string, path: string): Promise<FlannelError> {
    const err = this.statusError(status, body, permission, what, method, path);
    if (status !== 401 && status !== 403) return err;
    // Anonymous: /readyz is always authorized (--authorization-always-allow-paths), whatever our credentials are;
    // a starting apiserver answers it 500, or even 403 for a moment before its authorizers are set up.
    const readyz = (anonymous: boolean): Promise<number> =>
      this.send('GET', '/readyz', undefined, undefined, { timeoutMs: 5000, anonymous }).then((r) => r.status ?? 0, () => 0);
    let ready = await readyz(true);
    if (ready === 403) ready = await readyz(false);
    if (ready === 200 || ready === 401) return err; // ready, or it will not tell an anonymous client: the refusal stands
    return new FlannelError('FLN_ERR_KUBE_UNAVAILABLE', `the Kubernetes API server ${this.config.server} is not ready yet (/readyz: ${ready || 'no answer'}) ` +
      `and refused ${method} ${path} (${status}) meanwhile`, { cause: err, details: { status, method, path, server: this.config.server, permission } });
  }

  /** The error for a non-2xx answer: what it means and what to fix. */
  private statusError(status: number, body: string, permission: string, what: string, method: string, path: string): FlannelError {
    let message = body.slice(0, 300);
    try { const s = JSON.parse(body) as { message?: string }; if (typeof s.message === 'string') message = s.message; } catch { /* raw text */ }
    const details = { status, method, path, server: this.config.server };
    if (status === 401) {
      return new FlannelError('FLN_ERR_KUBE_FORBIDDEN', `the Kubernetes API server ${this.config.server} refused our credentials (401 Unauthorized) ` +
        `from ${this.config.source}: check the token or client certificate`, { details });
    }
    if (status === 403) {
      const anonymous = !this.config.token && !this.config.tokenFile && !this.config.cert;
      const todo = anonymous
        ? `our requests carry no credentials (${this.config.source}: a bare --kube-api-url sends none, so we are system:anonymous): ` +
          'pass --kubeconfig-file with a token or client certificate bound to flannel\'s ClusterRole (pods get; nodes get, list, watch; nodes/status patch), ' +
          'or run in a pod with the flannel ServiceAccount (no --kube-api-url, no --kubeconfig-file)'
        : 'grant flannel\'s ClusterRole (pods get; nodes get, list, watch; nodes/status patch) to this user';
      return new FlannelError('FLN_ERR_KUBE_FORBIDDEN', `missing permission "${permission}": the Kubernetes API server refused ${method} ${path} (403 Forbidden: ${message}); ${todo}`,
        { details: { ...details, permission, anonymous } });
    }
    if (status === 404) return new FlannelError('FLN_ERR_KUBE_NOT_FOUND', `${what} not found in the Kubernetes API (${this.config.server}): ${message}`, { details });
    if (status === 410) return new FlannelError('FLN_ERR_KUBE_WATCH_GONE', `${method} ${path}: 410 Gone: ${message}`, { details });
    if (status >= 500 || status === 429 || status === 0) {
      return new FlannelError('FLN_ERR_KUBE_UNAVAILABLE', `the Kubernetes API server ${this.config.server} answered ${status} to ${method} ${path}: ${message}`, { details });
    }
    return new FlannelError('FLN_ERR_KUBE_API', `the Kubernetes API server ${this.config.server} refused ${method} ${path} (${status}): ${message}`, { details });
  }

  private token(): string | undefined {
    if (this.config.token) return this.config.token;
    if (!this.config.tokenFile) return undefined;
    try { return readFileSync(this.config.tokenFile, 'utf8').trim(); } catch (err) {
      throw configError(`cannot read the token file ${this.config.tokenFile}: ${errorMessage(err)}`, err);
    }
  }

  private send(method: string, path: string, body: string | undefined, contentType: string | undefined,
    o: { signal?: AbortSignal; timeoutMs: number; headersOnly?: boolean; anonymous?: boolean }): Promise<{ status?: number; text?: string; res?: IncomingMessage }> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'flannel-ts' };
    const token = o.anonymous ? undefined : this.token();
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) { headers['content-type'] = contentType ?? 'application/json'; headers['content-length'] = String(Buffer.byteLength(body)); }
    const url = `${this.config.server}${path}`;
    return new Promise((resolve, reject) => {
      const request = this.https ? httpsRequest : httpRequest;
      let settled = false;
      const req = request(url, { method, headers, agent: this.agent as HttpsAgent }, (res) => {
        req.setTimeout(0);
        if (o.headersOnly) { settled = true; o.signal?.removeEventListener('abort', onAbort); resolve({ res }); return; }
        readBody(res).then((text) => { settled = true; o.signal?.removeEventListener('abort', onAbort); resolve({ status: res.statusCode ?? 0, text }); },
          (err: Error) => fail(err));
      });
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        o.signal?.removeEventListener('abort', onAbort);
        if (o.signal?.aborted) { resolve({}); return; }
        const tlsCode = (err as NodeJS.ErrnoException).code;
        if (tlsCode && UNTRUSTED_CERT_CODES.has(tlsCode)) {
          // Not an outage: retrying cannot help until the config names the right CA (client-go fails the same way).
          reject(new FlannelError('FLN_ERR_KUBE_CONFIG', `cannot verify the certificate of the Kubernetes API server ${this.config.server} (${tlsCode}: ${err.message}) ` +
            `with the CA of ${this.config.source}${this.config.ca ? '' : ' (none given: only the system\'s trusted CAs)'}: ` +
            'use a kubeconfig (--kubeconfig-file) whose cluster has certificate-authority(-data) of this server, or run in-cluster', { cause: err }));
          return;
        }
        reject(new FlannelError('FLN_ERR_KUBE_UNAVAILABLE', `cannot reach the Kubernetes API server ${this.config.server} (${method} ${path}): ${err.message}`, { cause: err }));
      };
      const onAbort = (): void => { req.destroy(new Error('stopped')); };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      req.setTimeout(o.timeoutMs, () => req.destroy(new Error(`no answer in ${o.timeoutMs / 1000} s`)));
      req.on('error', fail);
      req.end(body);
    });
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (d: Buffer) => chunks.push(d));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}
