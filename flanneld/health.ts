// flanneld's health endpoint on --healthz-ip/--healthz-port: GET /healthz is 200 while the process
// runs; GET /readyz is 200 once subnet.env is written, else 503 with the reason. Plain node:http.

import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { FlannelError, errorMessage } from '../lib/errors.js';

export interface HealthState {
  ready: boolean;
  /** Why the daemon is not ready, e.g. "waiting for network config: <error>". */
  reason: string;
}

export interface HealthServerOptions {
  /** Serves GET /metrics when given (Prometheus text exposition). */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  ip: string;
  /** 1–65535 in the daemon; 0 binds an ephemeral port (tests). */
  port: number;
}

interface Reply {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

const HEALTHZ_BODY = 'flanneld is running';
const READY_BODY = 'flanneld is ready';
const REQUEST_TIMEOUT_MS = 10_000;

export class HealthServer {
  readonly #opts: HealthServerOptions;
  readonly #state: () => HealthState;
  readonly #server: Server;

  constructor(opts: HealthServerOptions, state: () => HealthState) {
    validateOptions(opts);
    this.#opts = { ...opts };
    this.#state = state;
    this.#server = createServer((req, res) => this.#handle(req, res));
    this.#server.requestTimeout = REQUEST_TIMEOUT_MS;
    this.#server.headersTimeout = REQUEST_TIMEOUT_MS;
  }

  /** Binds ip:port; rejects with FLN_ERR_USAGE when the address cannot be bound. */
  listen(): Promise<void> {
    const { ip, port } = this.#opts;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(listenError(ip, port, err));
      this.#server.once('error', onError);
      this.#server.listen({ host: ip, port, exclusive: true }, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
  }

  /** The bound port once listening (the ephemeral one when 0 was requested), else the requested one. */
  get port(): number {
    const addr = this.#server.address();
    return addr !== null && typeof addr === 'object' ? addr.port : this.#opts.port;
  }

  /** Stops listening and drops open (keep-alive) connections. Safe to call when not listening. */
  close(): Promise<void> {
    if (!this.#server.listening) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#server.close((err) => (err ? reject(err) : resolve()));
      this.#server.closeAllConnections();
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const metrics = this.#opts.metrics;
    if (metrics && pathOf(req.url) === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      metrics().then(
        (m) => send(res, req.method === 'HEAD', { status: 200, body: m.body, headers: { 'Content-Type': m.contentType } }),
        (err: unknown) => send(res, false, { status: 500, body: `collecting metrics failed: ${errorMessage(err)}` }),
      );
      return;
    }
    send(res, req.method === 'HEAD', route(req, this.#state));
  }
}

function validateOptions(opts: HealthServerOptions): void {
  if (isIP(opts.ip) === 0) {
    throw new FlannelError('FLN_ERR_USAGE', `--healthz-ip must be an IP address, got ${JSON.stringify(opts.ip)}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new FlannelError('FLN_ERR_USAGE', `--healthz-port must be an integer in 0-65535, got ${String(opts.port)}`);
  }
}

function listenError(ip: string, port: number, err: NodeJS.ErrnoException): FlannelError {
  const code = err.code ?? 'UNKNOWN';
  return new FlannelError('FLN_ERR_USAGE', `cannot listen on --healthz-ip ${ip} --healthz-port ${port}: ${code} (${err.message})`, {
    cause: err,
    details: { ip, port, errno: code },
  });
}

function route(req: IncomingMessage, state: () => HealthState): Reply {
  const path = pathOf(req.url);
  if (path !== '/healthz' && path !== '/readyz') return { status: 404, body: `no such endpoint: ${path}` };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return { status: 405, body: `method ${String(req.method)} not allowed`, headers: { Allow: 'GET, HEAD' } };
  }
  return path === '/healthz' ? { status: 200, body: HEALTHZ_BODY } : readiness(state);
}

function readiness(state: () => HealthState): Reply {
  let current: HealthState;
  try {
    current = state();
  } catch (err) {
    return { status: 503, body: `cannot determine readiness: ${errorMessage(err)}` };
  }
  if (current.ready) return { status: 200, body: READY_BODY };
  return { status: 503, body: current.reason || 'not ready' };
}

/** The path of a request target without its query string; "" when it cannot be parsed. */
function pathOf(url: string | undefined): string {
  try {
    return new URL(url ?? '/', 'http://healthz.invalid').pathname;
  } catch {
    return '';
  }
}

function send(res: ServerResponse, head: boolean, reply: Reply): void {
  const body = Buffer.from(reply.body, 'utf8');
  res.writeHead(reply.status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(body.length),
    'Cache-Control': 'no-store',
    ...reply.headers,
  });
  res.end(head ? undefined : body);
}
