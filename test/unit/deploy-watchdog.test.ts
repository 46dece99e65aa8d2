// flanneld/watchdog.ts against a real AF_UNIX datagram listener (python3): the interval systemd asks
// for, WATCHDOG=1 pings at WATCHDOG_USEC/2, nothing after stop(), and no watchdog when not asked.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { startWatchdog, watchdogIntervalMs } from '../../flanneld/watchdog.js';

const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-watchdog-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

/** Records every datagram as [milliseconds since start, text]. */
async function listener(t: Test, name: string): Promise<{ path: string; got: Array<[number, string]> }> {
  const path = join(dir, name);
  const child = spawn('python3', ['-c', `
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print("bound", flush=True)
t0 = time.monotonic()
while True:
    d = s.recv(4096).decode()
    print(int((time.monotonic() - t0) * 1000), repr(d), flush=True)
`, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  const got: Array<[number, string]> = [];
  let buf = '';
  let bound = false;
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line === 'bound') bound = true;
      else got.push([Number(line.split(' ')[0]), line.slice(line.indexOf(' ') + 1)]);
    }
  });
  for (let i = 0; i < 100 && !bound; i++) await sleep(50);
  if (!bound) throw new Error('python listener did not start');
  return { path, got };
}

t.test('the interval is WATCHDOG_USEC/2, only for this process and only when set', async (t) => {
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }), 15_000);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) }), 15_000);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, 4242), undefined, 'meant for another process');
  t.equal(watchdogIntervalMs({}), undefined);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '0' }), undefined);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' }), undefined);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '1' }), 1, 'never below 1 ms');
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: String(10 ** 13) }), 2 ** 31 - 1, 'never past what a timer can hold');
});

t.test('WATCHDOG=1 goes out at once and then every interval, and stops with stop()', async (t) => {
  const l = await listener(t, 'wd.sock');
  const wd = startWatchdog(log, { NOTIFY_SOCKET: l.path, WATCHDOG_USEC: '200000' });
  t.equal(wd?.intervalMs, 100);
  await sleep(560);
  wd?.stop();
  await sleep(100);
  const count = l.got.length;
  await sleep(400);
  t.equal(l.got.length, count, 'no ping after stop()');
  t.ok(l.got.every(([, d]) => d === "'WATCHDOG=1'"), 'every datagram is exactly WATCHDOG=1');
  t.ok(count >= 3 && count <= 7, `about 6 pings in 560 ms (got ${count})`);
  const gaps = l.got.slice(1).map(([ms], i) => ms - (l.got[i] as [number, string])[0]);
  t.ok(gaps.every((g) => g >= 70 && g <= 500), `gaps near 100 ms: ${gaps.join(', ')}`);
});

t.test('no watchdog without NOTIFY_SOCKET or WATCHDOG_USEC; a dead socket is survived', async (t) => {
  t.equal(startWatchdog(log, { WATCHDOG_USEC: '200000' }), undefined);
  t.equal(startWatchdog(log, { NOTIFY_SOCKET: join(dir, 'x.sock') }), undefined);
  const wd = startWatchdog(log, { NOTIFY_SOCKET: join(dir, 'nobody-listens.sock'), WATCHDOG_USEC: '20000' });
  t.ok(wd, 'started although nobody listens');
  await sleep(50);
  wd?.stop();
});
