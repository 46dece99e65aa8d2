// The main-thread side of the packet engine: starts one TX and one RX worker over the device, the
// UDP socket and the shared peer table; restarts a worker that dies (with backoff, counted); stops
// them through an eventfd. Reads counters from shared memory, never per packet.
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { GLOBAL_STATS, GLOBAL_STAT_SLOTS, type GlobalStat, PEER_STATS, type PeerStat } from './layout.js';
import { type EngineSpec, datapathAddon } from './native/datapath-addon.js';
import type { EnginePeer, PeerTable } from './peer-table.js';
import type { WorkerData, WorkerMessage, WorkerReport } from './engine.worker.js';

type Direction = 'tx' | 'rx';

export interface PacketEngineOptions {
  readonly spec: Omit<EngineSpec, 'stopFd' | 'peerTable' | 'stats'>;
  readonly table: PeerTable;
  readonly log: Logger;
}

const WORKER_URL = new URL(`./engine.worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

export class PacketEngine {
  /** Workers restarted after a crash, since start. */
  restarts = 0;
  private readonly workers = new Map<Direction, Worker>();
  private readonly backoffMs = new Map<Direction, number>();
  private stopFd = -1;
  private stopping = false;

  constructor(private readonly o: PacketEngineOptions) {}

  async start(): Promise<void> {
    this.stopFd = datapathAddon().eventfdOpen();
    try {
      await Promise.all((['tx', 'rx'] as const).map((d) => this.spawn(d)));
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  replacePeers(peers: readonly EnginePeer[]): void {
    this.o.table.replace(peers);
  }

  /** Engine-wide counters (packets, bytes, drops by reason). */
  stats(): Record<GlobalStat, bigint> {
    const s = this.o.table.stats;
    return Object.fromEntries(GLOBAL_STATS.map((name, i) => [name, s[i] ?? 0n])) as Record<GlobalStat, bigint>;
  }

  /** Per-peer counters of a peer in the table. */
  peerStats(key: string): Record<PeerStat, bigint> | undefined {
    const slot = this.o.table.slotOf(key);
    if (slot === undefined) return undefined;
    const base = GLOBAL_STAT_SLOTS + slot * PEER_STATS.length;
    return Object.fromEntries(PEER_STATS.map((n, i) => [n, this.o.table.stats[base + i] ?? 0n])) as Record<PeerStat, bigint>;
  }

  /** Fault injection: makes a worker throw, as a crash would. */
  crashWorker(direction: Direction): void {
    this.workers.get(direction)?.postMessage({ type: 'crash' } satisfies WorkerMessage);
  }

  get alive(): number { return this.workers.size; }

  /** Signals the stop eventfd and waits (bounded) for both workers to leave their loops. */
  async stop(): Promise<void> {
    if (this.stopFd < 0) return;
    this.stopping = true;
    const exits = [...this.workers.values()].map((w) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => { void w.terminate(); }, 5000);
      w.once('exit', () => { clearTimeout(timer); resolve(); });
    }));
    datapathAddon().eventfdSignal(this.stopFd);
    await Promise.all(exits);
    datapathAddon().closeFd(this.stopFd);
    this.stopFd = -1;
  }

  private spawn(direction: Direction): Promise<void> {
    const data: WorkerData = { direction, spec: { ...this.o.spec, stopFd: this.stopFd, peerTable: this.o.table.words, stats: this.o.table.stats } };
    const worker = new Worker(WORKER_URL, { workerData: data, name: `engine-${direction}` });
    this.workers.set(direction, worker);
    const startedAt = Date.now();
    let failure: Error | undefined;
    worker.on('error', (err) => { failure = err; });
    worker.on('message', (m: WorkerReport) => this.onReport(m));
    worker.on('exit', (code) => {
      if (this.workers.get(direction) === worker) this.workers.delete(direction);
      if (this.stopping) return;
      this.onDeath(direction, failure ?? new Error(`exited with code ${code}`), Date.now() - startedAt);
    });
    return new Promise((resolve, reject) => {
      worker.once('online', () => resolve());
      worker.once('error', (err) => reject(err));
    });
  }

  private reported = false;

  /** Logs once which offload features the engine really uses, and which are missing. */
  private onReport(m: WorkerReport): void {
    if (m.type !== 'features' || m.direction !== 'rx' || this.reported) return;
    this.reported = true;
    const f = m.features;
    const missing = [!f.offload && 'TSO on the device (per-packet path)', f.offload && !f.gso && 'UDP GSO', f.offload && !f.gro && 'UDP GRO'].filter(Boolean);
    if (missing.length === 0) this.o.log.info('packet engine: TSO, UDP GSO, UDP GRO and coalescing are on');
    else this.o.log.warn({ missing }, `packet engine: running without ${missing.join(', ')}`);
  }

  private onDeath(direction: Direction, err: Error, uptimeMs: number): void {
    const prev = uptimeMs > 30_000 ? 0 : this.backoffMs.get(direction) ?? 0;
    const delayMs = Math.min(5000, prev === 0 ? 100 : prev * 2);
    this.backoffMs.set(direction, delayMs);
    this.restarts++;
    this.o.log.error({ direction, err: err.message, delayMs, restarts: this.restarts }, `packet engine ${direction} worker died; restarting it`);
    setTimeout(() => {
      if (!this.stopping) this.spawn(direction).catch((e: unknown) => this.o.log.error(`restarting the ${direction} worker failed: ${String(e)}`));
    }, delayMs).unref();
  }
}
