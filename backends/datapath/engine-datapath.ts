// A userspace data path as one unit, for the udp backend and the userspace VTEP: the TUN/TAP device
// and its sockets (open-device), the device's settings (DeviceState) and the packet engine, over a
// peer table that outlives them. ensure() keeps the settings; if the device was deleted by hand (its
// fds then fail with EBADFD and the workers die), it opens everything again on the same peer table,
// so peers and counters carry over, as a deleted kernel VXLAN device is re-created.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { DatapathStats, DatapathThreading, KernelDrops } from '../backend.js';
import { runCommand } from '../../lib/run-command.js';
import { DeviceState, type DeviceSpec } from './device-state.js';
import { datapathAddon } from './native/datapath-addon.js';
import { type OpenEngineDeviceOptions, openEngineDevice } from './open-device.js';
import { GLOBAL_STAT_SLOTS, PEER_STATS, type PeerStat } from './layout.js';
import { DEFAULT_THREADING, type EngineQueue, PacketEngine, type PacketEngineOptions, workersPerQueue } from './packet-engine.js';
import { type EnginePeer, type EnginePeer6, type EnginePeerDual, PeerTable } from './peer-table.js';

export interface EngineDataPathOptions {
  readonly device: Omit<OpenEngineDeviceOptions, 'log'>;
  readonly settings: Omit<DeviceSpec, 'name'>;
  readonly spec: Omit<PacketEngineOptions['spec'], 'offload' | 'uso'>;
  /** Peer table capacity. */
  readonly capacity: number;
  readonly threading?: DatapathThreading;
  readonly log: Logger;
}

/** The TUN/TAP device's queue towards the engine, in packets (the kernel makes it 500). Every packet for a
 * peer waits there until a TX worker reads it; when the queue is full the kernel drops the packet (the
 * device's tx_dropped, flanneld_datapath_device_dropped_packets_total). A burst of small packets (a 64-byte
 * UDP flood from a pod) fills 500 while a worker waits for a CPU on a busy node: measured with
 * bench/loss-accounting.ts on a 2-core VM (bench/results/2026-12-04-loss.txt, README "Loss under a 64-byte
 * UDP flood"), 4096 took these drops from 6.8–9.4 % of a flood to 0 in the median floods of udp and
 * userspace vxlan. The cost is memory, and only while the engine falls behind: at most
 * 4096 queued packets, which with TSO/USO super-packets of up to 64 KiB bounds it at 256 MiB (32 MiB at 500). */
export const ENGINE_TXQUEUELEN = 4096;

interface Opened { readonly name: string; readonly state: DeviceState; readonly engine: PacketEngine; readonly fds: number[]; readonly queues: readonly EngineQueue[] }

type AnyPeerTable = PeerTable<EnginePeer | EnginePeer6 | EnginePeerDual>;

async function openOnce(o: EngineDataPathOptions, table: AnyPeerTable): Promise<Opened> {
  const dev = openEngineDevice({ ...o.device, log: o.log });
  try {
    const state = new DeviceState({ minTxqueuelen: ENGINE_TXQUEUELEN, ...o.settings, name: dev.name });
    await state.ensure();
    const engine = new PacketEngine({ table, queues: dev.queues, log: o.log, spec: { ...o.spec, offload: dev.offload, uso: dev.uso }, ...(o.threading ? { threading: o.threading } : {}) });
    await engine.start();
    return { name: dev.name, state, engine, fds: dev.fds, queues: dev.queues };
  } catch (err) {
    for (const fd of dev.fds) datapathAddon().closeFd(fd);
    throw err;
  }
}

export class EngineDataPath {
  private queue: Promise<unknown> = Promise.resolve();
  /** Worker restarts of engines replaced since start. */
  private restartsBefore = 0;
  /** Kernel drops at devices and sockets replaced since start (a re-created device starts at 0). */
  private dropsBefore = { tx: 0n, rx: 0n, socket: 0n };

  private constructor(private readonly o: EngineDataPathOptions, private readonly table: AnyPeerTable, private current: Opened) {}

  /** An IPv6 engine (spec.family 6, device.bindIp6) gets a peer table of IPv6 entries: replacePeers then takes EnginePeer6;
   * a dual one (spec.dual) a table of family 46, replacePeers taking EnginePeerDual. */
  static async open(o: EngineDataPathOptions): Promise<EngineDataPath> {
    const family = o.spec.dual ? 46 : o.spec.family === 6 ? 6 : 4;
    const table: AnyPeerTable = new PeerTable<EnginePeer | EnginePeer6 | EnginePeerDual>(o.capacity, o.device.queues * workersPerQueue(o.threading ?? DEFAULT_THREADING), family);
    return new EngineDataPath(o, table, await openOnce(o, table));
  }

  get name(): string { return this.current.name; }
  get queues(): number { return this.o.device.queues; }

  /** EnginePeer for an IPv4 engine, EnginePeer6 for an IPv6 one (a TypeError otherwise, table unchanged). */
  replacePeers(peers: readonly EnginePeer[] | readonly EnginePeer6[] | readonly EnginePeerDual[]): void {
    this.table.replace(peers);
  }

  /** The counter slot of a peer in the table (wireguard keeps its per-peer state by it). */
  slotOf(key: string): number | undefined {
    return this.table.slotOf(key);
  }

  /** Counter slots per region: the range of slotOf(). */
  get slotCount(): number { return this.table.slotCount; }

  /** A per-peer counter of counter slot `slot`, summed over the workers. */
  peerCounter(slot: number, stat: PeerStat): bigint {
    return this.table.sum(GLOBAL_STAT_SLOTS + slot * PEER_STATS.length + PEER_STATS.indexOf(stat));
  }

  /** The receiving (listening) socket of queue 0: what a control plane sends its own datagrams from. */
  get listenFd(): number {
    return (this.current.queues[0] as EngineQueue).udpFd;
  }

  /** Fixes the device's settings, or re-creates the device if it is gone; returns how many things were fixed. */
  ensure(): Promise<number> {
    return this.serial(async () => {
      const fixed = await this.current.state.ensureIfPresent();
      if (fixed !== undefined) return fixed;
      this.o.log.warn({ device: this.current.name }, 'the device was deleted: re-creating it and restarting the packet engine');
      await this.closeCurrent();
      this.current = await openOnce(this.o, this.table);
      return 1;
    });
  }

  datapathStats(peers: Iterable<string>): DatapathStats {
    const s = this.current.engine.datapathStats(peers);
    return { ...s, workerRestarts: s.workerRestarts + this.restartsBefore, kernelDrops: this.kernelDrops() };
  }

  /** The device's tx_dropped and rx_dropped (sysfs) and our sockets' receive drops (SO_MEMINFO), each
   * read once now, plus what the devices and sockets this one replaced had counted. */
  kernelDrops(): KernelDrops {
    const now = currentDrops(this.current);
    return {
      devices: [{ device: this.current.name, txDropped: now.tx + this.dropsBefore.tx, rxDropped: now.rx + this.dropsBefore.rx }],
      socketReceive: now.socket + this.dropsBefore.socket,
    };
  }

  crashWorker(direction: 'tx' | 'rx'): void {
    this.current.engine.crashWorker(direction);
  }

  close(): Promise<void> {
    return this.serial(() => this.closeCurrent());
  }

  private async closeCurrent(): Promise<void> {
    await this.current.engine.stop();
    this.restartsBefore += this.current.engine.restarts;
    const last = currentDrops(this.current);
    this.dropsBefore = { tx: this.dropsBefore.tx + last.tx, rx: this.dropsBefore.rx + last.rx, socket: this.dropsBefore.socket + last.socket };
    const addon = datapathAddon();
    for (const fd of this.current.fds.splice(0)) addon.closeFd(fd);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}

/** A device statistic from sysfs (0 when the device is gone: a deleted device's counters are lost with it). */
function deviceStat(name: string, stat: 'tx_dropped' | 'rx_dropped'): bigint {
  try {
    return BigInt(readFileSync(`/sys/class/net/${name}/statistics/${stat}`, 'utf8').trim());
  } catch {
    return 0n;
  }
}

/** Receive drops of every UDP socket of the data path (receiving and sending ones; a closed one reads 0). */
function socketDrops(o: Opened): bigint {
  const fds = new Set(o.queues.flatMap((q) => [q.udpFd, ...q.txFds]));
  let n = 0n;
  for (const fd of fds) {
    try {
      n += BigInt(datapathAddon().socketDrops(fd));
    } catch { /* closed under us */ }
  }
  return n;
}

function currentDrops(o: Opened): { tx: bigint; rx: bigint; socket: bigint } {
  return { tx: deviceStat(o.name, 'tx_dropped'), rx: deviceStat(o.name, 'rx_dropped'), socket: socketDrops(o) };
}
