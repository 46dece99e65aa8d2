// Unit test of flanneld/sd-notify.ts and its native addon: a python3 AF_UNIX SOCK_DGRAM listener
// (filesystem path and abstract namespace) must receive the exact bytes sdNotify sends. Needs no root.

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { sdNotify } from '../../flanneld/sd-notify.js';

// Binds a datagram socket at argv[1] and one at abstract name argv[2], says "bound", then prints
// "<which> <hex of the first datagram>" and exits. Gives up after 20 s so it can never hang.
const LISTENER = `
import select, socket, sys
fs = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); fs.bind(sys.argv[1])
ab = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); ab.bind("\\0" + sys.argv[2])
print("bound", flush=True)
ready, _, _ = select.select([fs, ab], [], [], 20)
if not ready: sys.exit(2)
print("fs" if ready[0] is fs else "abstract", ready[0].recv(65536).hex(), flush=True)
`;

const dir = mkdtempSync(join(tmpdir(), 'flannel-sd-notify-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;

interface Listener {
  path: string;
  abstractName: string;
  /** Resolves with [which socket, received bytes] of the one datagram. */
  received: Promise<[string, Buffer]>;
}

async function startListener(tt: Test): Promise<Listener> {
  counter++;
  const path = join(dir, `notify-${counter}.sock`);
  const abstractName = `flannel-ts-test-${process.pid}-${counter}-${Math.random().toString(36).slice(2)}`;
  const child = spawn('python3', ['-c', LISTENER, path, abstractName], { stdio: ['ignore', 'pipe', 'inherit'] });
  tt.teardown(() => {
    if (child.exitCode === null) child.kill();
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.value !== 'bound') throw new Error(`python listener did not start: ${String(first.value)}`);
  const received = lines.next().then((r): [string, Buffer] => {
    const [which = '', hex = ''] = String(r.value ?? '').split(' ');
    return [which, Buffer.from(hex, 'hex')];
  });
  return { path, abstractName, received };
}

const STATE = 'READY=1\nSTATUS=ok';

t.test('sends the exact bytes to a filesystem socket', async (tt) => {
  const l = await startListener(tt);
  tt.equal(sdNotify(STATE, { NOTIFY_SOCKET: l.path }), true);
  const [which, data] = await l.received;
  tt.equal(which, 'fs');
  tt.same(data, Buffer.from(STATE, 'utf8'));
});

t.test('sends the exact bytes to an @abstract socket', async (tt) => {
  const l = await startListener(tt);
  tt.equal(sdNotify(STATE, { NOTIFY_SOCKET: `@${l.abstractName}` }), true);
  const [which, data] = await l.received;
  tt.equal(which, 'abstract');
  tt.same(data, Buffer.from(STATE, 'utf8'));
});

t.test('sends UTF-8 text unchanged', async (tt) => {
  const l = await startListener(tt);
  const state = 'STATUS=réseau prêt ✓';
  sdNotify(state, { NOTIFY_SOCKET: l.path });
  const [, data] = await l.received;
  tt.same(data, Buffer.from(state, 'utf8'));
});

t.test('returns false and sends nothing when NOTIFY_SOCKET is unset or empty', async (tt) => {
  tt.equal(sdNotify(STATE, {}), false);
  tt.equal(sdNotify(STATE, { NOTIFY_SOCKET: '' }), false);
});

t.test('throws with an errno code when nobody listens', async (tt) => {
  const missing = join(dir, 'no-such.sock');
  const err = catchError(() => sdNotify(STATE, { NOTIFY_SOCKET: missing }));
  tt.ok(err.code === 'ENOENT' || err.code === 'ECONNREFUSED', `code ${String(err.code)}`);
  tt.match(err.message, `sd_notify sendto ${missing}: `);

  const notASocket = join(dir, 'plain-file');
  writeFileSync(notASocket, '');
  tt.equal(catchError(() => sdNotify(STATE, { NOTIFY_SOCKET: notASocket })).code, 'ECONNREFUSED');

  const abstract = `@flannel-ts-test-nobody-${process.pid}`;
  tt.equal(catchError(() => sdNotify(STATE, { NOTIFY_SOCKET: abstract })).code, 'ECONNREFUSED');
});

t.test('rejects a socket path longer than sun_path', async (tt) => {
  const err = catchError(() => sdNotify(STATE, { NOTIFY_SOCKET: `/tmp/${'x'.repeat(200)}` }));
  tt.equal(err.code, 'ENAMETOOLONG');
});

function catchError(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (err) {
    if (err instanceof Error) return err;
    throw new Error(`threw a non-Error: ${String(err)}`);
  }
  throw new Error('expected an exception');
}
