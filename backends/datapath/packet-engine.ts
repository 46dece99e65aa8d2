// The main-thread side of the packet engine: per device queue, one worker serving both directions
// ('shared'), a TX and an RX worker ('pair'), or the adaptive pair ('adaptive': a lead serving both
// directions that lends RX to an assist under load, native/src/adaptive.c) over that queue's fd and
// socket, all sharing the peer table; restarts a worker that dies (with backoff, counted); stops them through an eventfd. Reads
// counters from shared memory, never per packet.
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { DatapathStats, DatapathThreading } from '../backend.js';
import { GLOBAL_STATS, GLOBAL_STAT_SLOTS, type GlobalStat, PEER_STATS, type PeerStat } from './layout.js';
import { type EngineSpec, datapathAddon } from './native/datapath-addon.js';
import type { EnginePeer, EnginePeer6, EnginePeerDual, PeerTable } from './peer-table.js';
import type { WorkerData, WorkerDirection, WorkerMessage, WorkerReport } from './engine.worker.js';

type WorkerKey = `${WorkerDirection}${number}`;

/** The longest the adaptive lead busy-polls for an answer it predicts (reply prediction, native/src/adaptive.c). */
export const ADAPTIVE_SPIN_US = 200;

/** --datapath-spin-us when not given: the adaptive lead's window; pair and shared workers would spin after every packet, so 0. */
export function defaultSpinUs(workers: DatapathThreading['workers']): number {
  return workers === 'adaptive' ? ADAPTIVE_SPIN_US : 0;
}

/** The default: the adaptive pair per queue (one worker while traffic is light). */
export const DEFAULT_THREADING: DatapathThreading = { workers: 'adaptive', spinUs: ADAPTIVE_SPIN_US };

/** Worker threads per queue: one serving both directions, or two (a TX and an RX worker, the adaptive pair). */
export function workersPerQueue(threading: DatapathThreading): number {
  return threading.workers === 'shared' ? 1 : 2;
}

/** The workers of one queue. */
export function queueDirections(threading: DatapathThreading): readonly WorkerDirection[] {
  return threading.workers === 'shared' ? ['both'] : threading.workers === 'adaptive' ? ['lead', 'assist'] : ['tx', 'rx'];
}

/** The counter region (PeerTable.region) a worker writes: one per worker, so no counter has two writers. */
export function counterRegion(threading: DatapathThreading, direction: WorkerDirection, queue: number): number {
  return queue * workersPerQueue(threading) + (direction === 'rx' || direction === 'assist' ? 1 : 0);
}

/** An adaptive queue's shared state: who serves RX, and the eventfds of the hand-overs. */
interface Handoff {
  readonly rxOwner: Uint32Array;
  readonly joinFd: number;
  readonly backFd: number;
}

/** The fds of one device queue: its TUN/TAP fd, its receiving socket, and the sending sockets. */
export interface EngineQueue {
  readonly devFd: number;
  readonly udpFd: number;
  readonly txFds: Int32Array;
}

export interface PacketEngineOptions {
  readonly spec: Omit<EngineSpec, 'stopFd' | 'peerTable' | 'stats' | 'devFd' | 'udpFd' | 'txFds' | 'spinUs'>;
  readonly queues: readonly EngineQueue[];
  readonly threading?: DatapathThreading;
  readonly table: PeerTable<EnginePeer | EnginePeer6 | EnginePeerDual>;
  readonly log: Logger;
}

const WORKER_URL = new URL(`./engine.worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

export class PacketEngine {
  /** Workers restarted after a crash, since start. */
  restarts = 0;
  private readonly workers = new Map<WorkerKey, Worker>();
  private readonly backoffMs = new Map<WorkerKey, number>();
  private stopFd = -1;
  private handoffs: Handoff[] = [];
  private stopping = false;
  private stopped: Promise<void> | undefined;

  private readonly threading: DatapathThreading;

  constructor(private readonly o: PacketEngineOptions) {
    this.threading = o.threading ?? DEFAULT_THREADING;
    const writers = o.queues.length * workersPerQueue(this.threading);
    if (o.table.writers !== writers) throw new RangeError(`the peer table has ${o.table.writers} counter regions; ${writers} workers need one each`);
  }

  async start(): Promise<void> {
    this.stopFd = datapathAddon().eventfdOpen();
    if (this.threading.workers === 'adaptive') {
      this.handoffs = this.o.queues.map(() => ({
        rxOwner: new Uint32Array(new SharedArrayBuffer(4)), joinFd: datapathAddon().eventfdOpen(), backFd: datapathAddon().eventfdOpen(),
      }));
    }
    try {
      await Promise.all(this.o.queues.flatMap((_, q) => queueDirections(this.threading).map((d) => this.spawn(d, q))));
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  replacePeers(peers: readonly EnginePeer[] | readonly EnginePeer6[] | readonly EnginePeerDual[]): void {
    this.o.table.replace(peers);
  }

  /** Engine-wide counters (packets, bytes, drops by reason). */
  stats(): Record<GlobalStat, bigint> {
    return Object.fromEntries(GLOBAL_STATS.flatMap((name, i) => (name ? [[name, this.o.table.sum(i)]] : []))) as Record<GlobalStat, bigint>;
  }

  /** Per-peer counters of a peer in the table. */
  peerStats(key: string): Record<PeerStat, bigint> | undefined {
    const slot = this.o.table.slotOf(key);
    if (slot === undefined) return undefined;
    const base = GLOBAL_STAT_SLOTS + slot * PEER_STATS.length;
    return Object.fromEntries(PEER_STATS.map((n, i) => [n, this.o.table.sum(base + i)])) as Record<PeerStat, bigint>;
  }

  /** Counters for /metrics: engine-wide, per peer (of `peers`, the keys in the table), and restarts. */
  datapathStats(peers: Iterable<string>): DatapathStats {
    return {
      counters: this.stats(),
      peers: [...peers].flatMap((peer) => {
        const counters = this.peerStats(peer);
        return counters ? [{ peer, counters }] : [];
      }),
      workerRestarts: this.restarts,
    };
  }

  /** Fault injection: makes a worker throw, as a crash would (the shared worker for either direction; of
   * the adaptive pair, the lead for tx and the assist for rx). */
  crashWorker(direction: 'tx' | 'rx', queue = 0): void {
    const w = this.threading.workers;
    const d: WorkerDirection = w === 'shared' ? 'both' : w === 'adaptive' ? (direction === 'tx' ? 'lead' : 'assist') : direction;
    this.workers.get(`${d}${queue}`)?.postMessage({ type: 'crash' } satisfies WorkerMessage);
  }

  get alive(): number { return this.workers.size; }

  /** Signals the stop eventfd and waits (bounded) for the workers to leave their loops; concurrent
   * calls share one stop, so the eventfd is closed once. */
  stop(): Promise<void> {
    this.stopped ??= this.stopOnce();
    return this.stopped;
  }

  private async stopOnce(): Promise<void> {
    if (this.stopFd < 0) return;
    this.stopping = true;
    const exits = [...this.workers.values()].map((w) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => { void w.terminate(); }, 5000);
      w.once('exit', () => { clearTimeout(timer); resolve(); });
    }));
    datapathAddon().eventfdSignal(this.stopFd);
    await Promise.all(exits);
    datapathAddon().closeFd(this.stopFd);
    for (const h of this.handoffs.splice(0)) { datapathAddon().closeFd(h.joinFd); datapathAddon().closeFd(h.backFd); }
    this.stopFd = -1;
  }

  private spawn(direction: WorkerDirection, queue: number): Promise<void> {
    const key: WorkerKey = `${direction}${queue}`;
    const q = this.o.queues[queue] as EngineQueue;
    const spec = {
      ...this.o.spec, ...q, ...this.handoffs[queue], stopFd: this.stopFd, peerTable: this.o.table.words,
      stats: this.o.table.region(counterRegion(this.threading, direction, queue)), spinUs: this.threading.spinUs,
    };
    const data: WorkerData = { direction, spec };
    const worker = new Worker(WORKER_URL, { workerData: data, name: `engine-${key}` });
    this.workers.set(key, worker);
    const startedAt = Date.now();
    let failure: Error | undefined;
    worker.on('error', (err) => { failure = err; });
    worker.on('message', (m: WorkerReport) => this.onReport(m));
    worker.on('exit', (code) => {
      if (this.workers.get(key) === worker) this.workers.delete(key);
      if (this.stopping) return;
      this.onDeath(direction, queue, failure ?? new Error(`exited with code ${code}`), Date.now() - startedAt);
    });
    return new Promise((resolve, reject) => {
      worker.once('online', () => resolve());
      worker.once('error', (err) => reject(err));
    });
  }

  private reported = false;

  /** Logs once which offload features the engine really uses, and which are missing. */
  private onReport(m: WorkerReport): void {
    if (m.type !== 'features' || m.direction === 'tx' || m.direction === 'assist' || this.reported) return;
    const per = { shared: 'one worker for both directions', pair: 'one TX and one RX worker', adaptive: 'one worker for both directions, a second one for RX under load' }[this.threading.workers];
    this.o.log.info({ queues: this.o.queues.length, workers: this.threading.workers, spinUs: this.threading.spinUs }, `packet engine: ${this.o.queues.length} queue(s), ${per} per queue`);
    this.reported = true;
    const f = m.features;
    const missing = [!f.offload && 'TSO on the device (per-packet path)', f.offload && !f.gso && 'UDP GSO', f.offload && !f.gro && 'UDP GRO', f.offload && !f.uso && 'USO on the device (UDP datagrams one by one)'].filter(Boolean);
    if (missing.length === 0) this.o.log.info('packet engine: TSO, USO, UDP GSO, UDP GRO and coalescing are on');
    else this.o.log.warn({ missing }, `packet engine: running without ${missing.join(', ')}`);
  }

  private onDeath(direction: WorkerDirection, queue: number, err: Error, uptimeMs: number): void {
    const key: WorkerKey = `${direction}${queue}`;
    const prev = uptimeMs > 30_000 ? 0 : this.backoffMs.get(key) ?? 0;
    const delayMs = Math.min(5000, prev === 0 ? 100 : prev * 2);
    this.backoffMs.set(key, delayMs);
    this.restarts++;
    this.o.log.error({ direction, queue, err: err.message, delayMs, restarts: this.restarts }, `packet engine ${workerName(direction, queue)} died; restarting it`);
    setTimeout(() => {
      if (!this.stopping) this.spawn(direction, queue).catch((e: unknown) => this.o.log.error(`restarting the packet engine ${workerName(direction, queue)} failed: ${String(e)}`));
    }, delayMs).unref();
  }
}

/** "tx worker 0", "rx worker 0", "lead worker 0", "worker 0" (one worker for both directions). */
function workerName(direction: WorkerDirection, queue: number): string {
  return `${direction === 'both' ? '' : `${direction} `}worker ${queue}`;
}
