// The running wireguard network: the peers from the leases (only wireguard leases with a valid key; a
// changed key replaces the peer at once, its sessions with it), the engine's peer table (endpoint and
// allowed IPs per peer), and the sessions on the main thread: handshake messages from the engine's pipe,
// a 100 ms timer tick, keepalives. reconcile() re-creates a deleted device and puts roamed endpoints
// back to the leases' (flannel #1770).
// Family 6 (flannel-wg-v6, `separate` mode): the same over IPv6, a second network beside the IPv4 one:
// peers from the leases' IPv6Subnet, PublicIPv6 and BackendV6Data (Port missing or 0: our ListenPortV6),
// named by their IPv6 subnet; leases without them (IPv4-only nodes) have no IPv6 peer.
// Single device (flannel-wg of Mode auto, ipv4 or ipv6 with EnableIPv6, a dual engine): one peer per lease,
// named by leaseIdentity, with both subnets as allowed IPs, dialed at the address its Mode picks
// (single-device.ts) on the port of its BackendData (else BackendV6Data, else our ListenPort); in auto an
// IPv4 address is dialed as ::ffff:a.b.c.d through the engine's socket of both families.
import type { Logger } from 'pino';
import { type Cidr4, formatCidr4 } from '../../lib/ip.js';
import { type Cidr6, type Ip6, formatCidr6, ip4Mapped } from '../../lib/ip6.js';
import { type Lease, type LeaseEvent, leaseIdentity } from '../backend.js';
import type { DatapathStats, Network, ReconcileResult } from '../backend.js';
import type { EngineDataPath } from '../datapath/engine-datapath.js';
import { ip6Bytes } from '../datapath/peer-table.js';
import { EventBatcher } from '../datapath/event-batch.js';
import { datapathAddon } from '../datapath/native/datapath-addon.js';
import type { NodeKey } from './key-file.js';
import { type WireGuardPeerData, parseWireGuardBackendData } from './lease-data.js';
import { HandshakeQueue } from './session/handshake-queue.js';
import { WireGuardSessions } from './session/sessions.js';
import { type WgTable, wgSubnetFold6 } from './session/wg-table.js';
import type { WireGuardConfig } from './wireguard-config.js';
import { type OwnAddresses, type SingleDeviceMode, singleDeviceEndpoint, singleDevicePeerData } from './single-device.js';

const TICK_MS = 100;

export interface WireGuardNetworkOptions {
  readonly lease: Lease;
  readonly dataPath: EngineDataPath;
  readonly table: WgTable;
  readonly cfg: WireGuardConfig;
  readonly key: NodeKey;
  readonly ctrlRead: number;
  readonly ctrlWrite: number;
  readonly log: Logger;
  /** 6: flannel-wg-v6, an engine of family 6 (default 4); with `single`, the outer family of the dual engine. */
  readonly family?: 4 | 6;
  /** flannel-wg of a single-device mode: a dual engine, peers with both subnets, endpoints by the Mode. */
  readonly single?: { readonly mode: SingleDeviceMode; readonly own: OwnAddresses };
}

/** A peer of either family: its subnet and endpoint address in the network's family. */
interface Peer {
  readonly lease: Lease; readonly data: WireGuardPeerData; readonly subnet?: Cidr4; readonly subnet6?: Cidr6; readonly ip6?: Ip6;
  /** single device: the outer address its Mode dials */
  readonly endpoint?: number | Ip6;
}

export class WireGuardNetwork implements Network {
  readonly lease: Lease;
  private readonly peers = new Map<string, Peer>();
  private readonly batch = new EventBatcher((events) => this.swap(events));
  private readonly sessions: WireGuardSessions;
  private readonly queue: HandshakeQueue;
  private readonly timer: NodeJS.Timeout;
  private readonly ignored = new Set<string>();
  private closed = false;

  private readonly family: 4 | 6;

  constructor(private readonly o: WireGuardNetworkOptions) {
    this.lease = o.lease;
    this.family = o.family ?? 4;
    const addon = datapathAddon();
    this.sessions = new WireGuardSessions({
      privateKey: o.key.privateKey,
      ...(o.cfg.psk ? { presharedKey: o.cfg.psk } : {}),
      table: o.table,
      send: (msg, ip, port) => {
        try {
          if (typeof ip === 'bigint') addon.udpSendTo6(o.dataPath.listenFd, msg, ip6Bytes(ip), port);
          else addon.udpSendTo(o.dataPath.listenFd, msg, ip, port);
        } catch (err) {
          o.log.debug({ err: (err as Error).message }, 'wireguard: sending a handshake message failed');
        }
      },
      counters: (slot) => ({
        txPackets: o.dataPath.peerCounter(slot, 'tx_packets'),
        rxPackets: o.dataPath.peerCounter(slot, 'rx_packets'),
        rxKeepalives: o.dataPath.peerCounter(slot, 'rx_keepalives'),
      }),
      log: o.log,
    });
    this.queue = new HandshakeQueue(o.ctrlRead, (msg, ip, port) => this.sessions.handleMessage(msg, ip, port), o.log, this.family);
    this.timer = setInterval(() => this.sessions.tick(), TICK_MS);
  }

  /** Events handed over in one go make one table swap, as in the udp backend. */
  apply(events: readonly LeaseEvent[]): Promise<void> {
    return this.batch.push(events);
  }

  private swap(events: readonly LeaseEvent[]): void {
    if (this.closed) return;
    if (this.o.single) {
      for (const ev of events) this.swapSingle(ev, this.o.single.mode, this.o.single.own);
      this.o.dataPath.replacePeers([...this.peers.entries()].map(([key, p]) => ({
        key, dual: true as const, port: p.data.port,
        ...(p.subnet ? { subnet4: { ip: p.subnet.ip, prefixLen: p.subnet.prefixLen } } : {}),
        ...(p.subnet6 ? { subnet6: { ip: p.subnet6.ip, prefixLen: p.subnet6.prefixLen } } : {}),
        publicIp: typeof p.endpoint === 'number' ? p.endpoint : 0,
        ...(typeof p.endpoint === 'bigint' ? { publicIp6: p.endpoint } : {}),
      })));
      this.pushSessions();
      this.o.log.info({ peers: this.peers.size, mode: this.o.single.mode }, 'wireguard peers updated');
      return;
    }
    for (const ev of events) {
      if (this.family === 6) {
        this.swap6(ev);
        continue;
      }
      const { subnet } = ev.lease;
      if (!subnet) continue; // an IPv6-only lease: no IPv4 peer
      const key = formatCidr4(subnet);
      if (ev.kind === 'removed') {
        if (this.peers.get(key)?.lease.attrs.publicIp === ev.lease.attrs.publicIp) this.peers.delete(key);
        continue;
      }
      const data = ev.lease.attrs.backendType === 'wireguard' ? parseWireGuardBackendData(ev.lease.attrs.backendData, this.o.cfg.listenPort) : undefined;
      if (!data) {
        this.peers.delete(key);
        if (!this.ignored.has(key)) this.o.log.warn({ peer: key, backendType: ev.lease.attrs.backendType }, 'wireguard: ignoring a lease that is not a wireguard lease with a valid PublicKey');
        this.ignored.add(key);
        continue;
      }
      this.ignored.delete(key);
      this.peers.set(key, { lease: ev.lease, data, subnet });
    }
    if (this.family === 6) {
      this.o.dataPath.replacePeers([...this.peers.entries()].map(([key, p]) => ({
        key, subnet: (p.subnet6 as Cidr6).ip, prefixLen: (p.subnet6 as Cidr6).prefixLen, publicIp: p.ip6 as Ip6, port: p.data.port,
      })));
    } else {
      this.o.dataPath.replacePeers([...this.peers.entries()].map(([key, p]) => ({
        key, subnet: (p.subnet as Cidr4).ip, prefixLen: (p.subnet as Cidr4).prefixLen, publicIp: p.lease.attrs.publicIp, port: p.data.port,
      })));
    }
    this.pushSessions();
    this.o.log.info({ peers: this.peers.size, family: this.family }, 'wireguard peers updated');
  }

  /** One lease event for flannel-wg-v6: a peer needs an IPv6 subnet, a PublicIPv6 and a BackendV6Data key. */
  private swap6(ev: LeaseEvent): void {
    const { ipv6Subnet, attrs } = ev.lease;
    if (!ipv6Subnet) return; // an IPv4-only lease: nothing to reach over IPv6
    const key = formatCidr6(ipv6Subnet);
    if (ev.kind === 'removed') {
      // By PublicIPv6, the peer's endpoint: in an IPv6-only network every PublicIP is 0.0.0.0.
      if (this.peers.get(key)?.ip6 === attrs.publicIpv6) this.peers.delete(key);
      return;
    }
    const data = attrs.backendType === 'wireguard' ? parseWireGuardBackendData(attrs.backendV6Data, this.o.cfg.listenPortV6) : undefined;
    if (!data || attrs.publicIpv6 === undefined) {
      this.peers.delete(key);
      if (!this.ignored.has(key)) this.o.log.warn({ peer: key, backendType: attrs.backendType }, 'wireguard: ignoring an IPv6 lease without a PublicIPv6 and a BackendV6Data with a valid PublicKey');
      this.ignored.add(key);
      return;
    }
    this.ignored.delete(key);
    this.peers.set(key, { lease: ev.lease, data, subnet6: ipv6Subnet, ip6: attrs.publicIpv6 });
  }

  /** One lease event for flannel-wg of a single-device mode: one peer with the lease's subnets, at the address the Mode dials. */
  private swapSingle(ev: LeaseEvent, mode: SingleDeviceMode, own: OwnAddresses): void {
    const { subnet, ipv6Subnet, attrs } = ev.lease;
    const key = leaseIdentity(ev.lease);
    if (ev.kind === 'removed') {
      const have = this.peers.get(key)?.lease.attrs;
      if (have && have.publicIp === attrs.publicIp && have.publicIpv6 === attrs.publicIpv6) this.peers.delete(key);
      return;
    }
    const data = attrs.backendType === 'wireguard' ? singleDevicePeerData(attrs, this.o.cfg.listenPort) : undefined;
    const chosen = data ? singleDeviceEndpoint(mode, attrs, own) : undefined;
    // auto: the engine's one socket serves both families; an IPv4 endpoint is dialed as ::ffff:a.b.c.d
    const endpoint = mode === 'auto' && typeof chosen === 'number' ? ip4Mapped(chosen) : chosen;
    // The one outer family of the engine: a peer the Mode would dial over the other one is left out.
    if (!data || endpoint === undefined || (typeof endpoint === 'bigint') !== (this.family === 6)) {
      this.peers.delete(key);
      if (!this.ignored.has(key)) {
        this.o.log.warn({ peer: key, backendType: attrs.backendType, mode }, `wireguard: ignoring a lease without a valid wireguard PublicKey or without the ${this.family === 6 ? 'PublicIPv6' : 'PublicIP'} Mode ${mode} dials`);
      }
      this.ignored.add(key);
      return;
    }
    this.ignored.delete(key);
    this.peers.set(key, { lease: ev.lease, data, endpoint, ...(subnet ? { subnet } : {}), ...(ipv6Subnet ? { subnet6: ipv6Subnet } : {}) });
  }

  /** The sessions' view of the peers: keys, counter slots, lease endpoints (roamed ones reset). */
  private pushSessions(): void {
    this.sessions.setPeers([...this.peers.entries()].map(([key, p]) => ({
      key, publicKey: p.data.publicKey, slot: this.o.dataPath.slotOf(key),
      subnet: p.subnet6 ? wgSubnetFold6(p.subnet6.ip) : (p.subnet as Cidr4).ip,
      endpointIp: p.endpoint ?? p.ip6 ?? p.lease.attrs.publicIp, endpointPort: p.data.port, keepaliveSeconds: this.o.cfg.persistentKeepaliveSec,
    })));
  }

  /** flannel-wg's address, MTU, state and route (the device itself if it was deleted); roamed endpoints back to the leases'. */
  async reconcile(): Promise<ReconcileResult> {
    const fixed = await this.o.dataPath.ensure();
    this.pushSessions();
    return { fixed, removed: 0, failed: 0 };
  }

  datapathStats(): DatapathStats {
    const s = this.sessions.stats();
    const messages = (direction: 'sent' | 'received', counts: object) =>
      Object.entries(counts as Record<string, number>).map(([type, count]) => ({ direction, type: type === 'cookieReply' ? 'cookie_reply' : type, count }));
    return {
      ...this.o.dataPath.datapathStats(this.peers.keys()),
      handshake: {
        messages: [...messages('sent', s.sent), ...messages('received', s.received)],
        drops: s.drops, completed: s.handshakesCompleted, givenUp: s.handshakeGiveUps, underLoad: s.underLoad,
        peers: s.peers.map((p) => ({ peer: p.key, lastHandshakeUnix: p.lastHandshakeUnix, keypairAgeSeconds: p.currentKeypairAgeSeconds })),
      },
    };
  }

  crashWorker(direction: 'tx' | 'rx'): void {
    this.o.dataPath.crashWorker(direction);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.queue.close();
    this.sessions.close();
    await this.o.dataPath.close();
    const addon = datapathAddon();
    addon.closeFd(this.o.ctrlWrite);
  }
}
