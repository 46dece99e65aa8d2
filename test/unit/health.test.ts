// Unit test of flanneld/health.ts: /healthz, /readyz (flipping readiness), 404/405, HEAD, and the
// FLN_ERR_USAGE rejection on a port already in use. Binds ephemeral ports on 127.0.0.1.

import t from 'tap';
import { HealthServer } from '../../flanneld/health.js';
import type { HealthState } from '../../flanneld/health.js';
import { isFlannelError } from '../../lib/errors.js';

let state: HealthState = { ready: false, reason: 'waiting for network config: key /coreos.com/network/config not found' };
const server = new HealthServer({ ip: '127.0.0.1', port: 0 }, () => state);

t.before(() => server.listen());
t.teardown(() => server.close());

function url(path: string): string {
  return `http://127.0.0.1:${server.port}${path}`;
}

async function get(path: string, method = 'GET'): Promise<{ status: number; body: string; res: Response }> {
  const res = await fetch(url(path), { method });
  return { status: res.status, body: await res.text(), res };
}

t.test('binds an ephemeral port when 0 is requested', async (tt) => {
  tt.ok(server.port > 0 && server.port < 65536, `port ${server.port}`);
});

t.test('/healthz is always 200 while running', async (tt) => {
  state = { ready: false, reason: 'not yet' };
  const r = await get('/healthz');
  tt.equal(r.status, 200);
  tt.equal(r.body, 'flanneld is running');
  tt.match(r.res.headers.get('content-type'), /^text\/plain/);
});

t.test('/readyz follows the state function', async (tt) => {
  state = { ready: false, reason: 'waiting for network config: etcd unavailable' };
  let r = await get('/readyz');
  tt.equal(r.status, 503);
  tt.equal(r.body, 'waiting for network config: etcd unavailable');

  state = { ready: true, reason: '' };
  r = await get('/readyz');
  tt.equal(r.status, 200);
  tt.equal(r.body, 'flanneld is ready');

  state = { ready: false, reason: 'lease revoked' };
  r = await get('/readyz?verbose=1');
  tt.equal(r.status, 503);
  tt.equal(r.body, 'lease revoked');
});

t.test('/readyz is 503 when the state function throws', async (tt) => {
  const broken = new HealthServer({ ip: '127.0.0.1', port: 0 }, () => {
    throw new Error('boom');
  });
  await broken.listen();
  tt.teardown(() => broken.close());
  const res = await fetch(`http://127.0.0.1:${broken.port}/readyz`);
  tt.equal(res.status, 503);
  tt.match(await res.text(), /boom/);
});

t.test('HEAD has the status and no body', async (tt) => {
  state = { ready: true, reason: '' };
  const r = await get('/readyz', 'HEAD');
  tt.equal(r.status, 200);
  tt.equal(r.body, '');
});

t.test('unknown paths are 404, other methods 405', async (tt) => {
  tt.equal((await get('/metrics')).status, 404);
  tt.equal((await get('/')).status, 404);
  const r = await get('/healthz', 'POST');
  tt.equal(r.status, 405);
  tt.equal(r.res.headers.get('allow'), 'GET, HEAD');
  tt.equal((await get('/readyz', 'DELETE')).status, 405);
});

t.test('listen rejects with FLN_ERR_USAGE when the port is taken', async (tt) => {
  const clash = new HealthServer({ ip: '127.0.0.1', port: server.port }, () => state);
  const err: unknown = await clash.listen().then(
    () => undefined,
    (e: unknown) => e,
  );
  tt.ok(isFlannelError(err, 'FLN_ERR_USAGE'), 'FlannelError FLN_ERR_USAGE');
  tt.match(errorText(err), `cannot listen on --healthz-ip 127.0.0.1 --healthz-port ${server.port}: EADDRINUSE`);
  await clash.close();
});

t.test('the constructor rejects bad flags', async (tt) => {
  tt.throws(() => new HealthServer({ ip: 'localhost', port: 8080 }, () => state), { code: 'FLN_ERR_USAGE' });
  tt.throws(() => new HealthServer({ ip: '0.0.0.0', port: 70000 }, () => state), { code: 'FLN_ERR_USAGE' });
  tt.throws(() => new HealthServer({ ip: '0.0.0.0', port: 1.5 }, () => state), { code: 'FLN_ERR_USAGE' });
});

t.test('close is idempotent and stops serving', async (tt) => {
  const s = new HealthServer({ ip: '127.0.0.1', port: 0 }, () => state);
  await s.close();
  await s.listen();
  const port = s.port;
  tt.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  await s.close();
  await s.close();
  await tt.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
});

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
