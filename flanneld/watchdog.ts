// systemd's watchdog for flanneld: when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this
// process), WATCHDOG=1 goes to NOTIFY_SOCKET every WATCHDOG_USEC/2 from an event-loop timer. It is
// deliberately not tied to etcd: an etcd outage must not restart the data path; a stuck event loop must.
import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import { sdNotify } from './sd-notify.js';

type Env = Readonly<Record<string, string | undefined>>;

export interface Watchdog {
  readonly intervalMs: number;
  stop(): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** The ping interval asked for by systemd, or undefined when there is no watchdog for this process. */
export function watchdogIntervalMs(env: Env = process.env, pid: number = process.pid): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (!usec || !/^\d+$/.test(usec) || Number(usec) === 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.floor(Number(usec) / 2000)));
}

/** Sends a first ping now and then every interval; undefined (nothing started) without a watchdog. */
export function startWatchdog(log: Logger, env: Env = process.env): Watchdog | undefined {
  const intervalMs = watchdogIntervalMs(env);
  if (intervalMs === undefined || !env.NOTIFY_SOCKET) return undefined;
  let failing = false;
  const ping = (): void => {
    try {
      sdNotify('WATCHDOG=1', env);
      if (failing) log.info('watchdog pings reach systemd again');
      failing = false;
    } catch (err) {
      if (!failing) log.warn(`watchdog ping failed (will keep trying): ${errorMessage(err)}`);
      failing = true;
    }
  };
  ping();
  const timer = setInterval(ping, intervalMs);
  timer.unref();
  log.info({ intervalMs }, 'systemd watchdog enabled');
  return { intervalMs, stop: () => clearInterval(timer) };
}
