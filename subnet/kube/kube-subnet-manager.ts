// flannel's Kubernetes subnet manager (--kube-subnet-mgr): the network config comes from a file (the ConfigMap's
// net-conf.json), our subnet is our Node's spec.podCIDR(s) (allocated by the cluster, never by us), we advertise
// our backend through annotations patched on our Node's status, and the other nodes' leases are their Nodes,
// listed and watched. Leases do not expire here: nothing to renew. When the API server goes away, the last known
// peers stay programmed and the watch retries with backoff until it is back.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { Backoff, sleep } from '../backoff.js';
import { FlannelError, errorMessage, isAbortError, isFlannelError } from '../../lib/errors.js';
import { type Cidr4, cidrContains, formatCidr4, lastIp, parseIp4 } from '../../lib/ip.js';
import { type Cidr6, cidr6Contains, formatCidr6, lastIp6, parseIp6 } from '../../lib/ip6.js';
import { type Lease, type LeaseAttrs, type LeaseEvent, describeNode, describeSubnets, leaseIdentity } from '../lease.js';
import { LeaseWatcher } from '../lease-watcher.js';
import { type NetworkConfig, parseNetworkConfig } from '../network-config.js';
import type { AcquireOptions, SubnetEvent, SubnetManager, WatchCallbacks } from '../subnet-manager.js';
import {
  type AnnotationNames, type Families, annotationNames, annotationsToPatch, applyOverwrites, desiredAnnotations, leaseFromNode,
  networkAvailablePatch, podCidrsOf,
} from './annotations.js';
import type { KubeClient, KubeNode } from './kube-client.js';

export const DEFAULT_NET_CONF_PATH = '/etc/kube-flannel/net-conf.json';
/** A full re-list at least this often (client-go's informer resync in flannel). */
export const DEFAULT_KUBE_RESYNC_MS = 5 * 60_000;
/** How often the podCIDR of our Node is looked at again while it is not assigned (flannel: every 3 s). */
const POD_CIDR_POLL_MS = 3000;

export interface KubeSubnetManagerOptions {
  readonly log: Logger;
  /** net-conf.json. */
  readonly netConfPath?: string;
  /** --kube-annotation-prefix. */
  readonly annotationPrefix?: string;
  /** --set-node-network-unavailable (default true). */
  readonly setNodeNetworkUnavailable?: boolean;
  /** NODE_NAME, POD_NAME, POD_NAMESPACE are read from here. */
  readonly env?: NodeJS.ProcessEnv;
  readonly onEvent?: (ev: SubnetEvent) => void;
  readonly resyncIntervalMs?: number;
  readonly random?: () => number;
}

export class KubeSubnetManager implements SubnetManager {
  readonly names: AnnotationNames;
  private readonly log: Logger;
  private readonly netConfPath: string;
  private readonly setNodeNetworkUnavailable: boolean;
  private readonly env: NodeJS.ProcessEnv;
  private readonly emit: (ev: SubnetEvent) => void;
  private readonly resyncIntervalMs: number;
  private readonly random: () => number;
  private nodeName: string | undefined;
  private families: Families = { ipv4: true, ipv6: false };
  private reannotating = false;

  constructor(private readonly client: KubeClient, o: KubeSubnetManagerOptions) {
    this.log = o.log;
    this.names = annotationNames(o.annotationPrefix);
    this.netConfPath = o.netConfPath ?? DEFAULT_NET_CONF_PATH;
    this.setNodeNetworkUnavailable = o.setNodeNetworkUnavailable ?? true;
    this.env = o.env ?? process.env;
    this.resyncIntervalMs = o.resyncIntervalMs ?? DEFAULT_KUBE_RESYNC_MS;
    this.random = o.random ?? Math.random;
    const onEvent = o.onEvent;
    this.emit = onEvent ? (ev) => { try { onEvent(ev); } catch { /* metrics never break the manager */ } } : () => {};
  }

  /** Reads and parses net-conf.json, every second until it is usable (as the etcd manager waits for its key). */
  async waitForNetworkConfig(signal: AbortSignal, onProblem: (err: FlannelError) => void): Promise<NetworkConfig> {
    for (;;) {
      try {
        let text: string;
        try {
          text = readFileSync(this.netConfPath, 'utf8');
        } catch (err) {
          throw new FlannelError('FLN_ERR_CONFIG_NOT_FOUND', `cannot read the network config file ${this.netConfPath} (${errorMessage(err)}): ` +
            'mount the kube-flannel ConfigMap\'s net-conf.json there or pass --net-config-path', { cause: err });
        }
        const cfg = parseNetworkConfig(text, `file ${this.netConfPath}`);
        this.families = { ipv4: cfg.ipv4 !== undefined, ipv6: cfg.ipv6 !== undefined };
        return cfg;
      } catch (err) {
        if (!(err instanceof FlannelError)) throw err;
        onProblem(err);
        this.log.error({ code: err.code }, `Couldn't fetch network config: ${err.message}`);
      }
      await sleep(1000, signal);
    }
  }

  /** NODE_NAME, or the node of our pod (POD_NAME in POD_NAMESPACE). */
  private async resolveNodeName(signal: AbortSignal): Promise<string> {
    const direct = this.env.NODE_NAME?.trim();
    if (direct) return direct;
    const pod = this.env.POD_NAME?.trim();
    const ns = this.env.POD_NAMESPACE?.trim();
    if (!pod || !ns) {
      throw new FlannelError('FLN_ERR_KUBE_CONFIG', 'cannot tell which Node this is: set NODE_NAME (e.g. from the downward API\'s spec.nodeName), ' +
        'or POD_NAME and POD_NAMESPACE');
    }
    const p = await this.retrying(`get pod ${ns}/${pod}`, signal, () => this.client.getPod(ns, pod));
    const name = p.spec?.nodeName;
    if (!name) throw new FlannelError('FLN_ERR_KUBE_CONFIG', `pod ${ns}/${pod} has no spec.nodeName yet: set NODE_NAME`);
    return name;
  }

  /** Runs `fn` until it succeeds; an unreachable API server (or a missing object) is retried with backoff, anything else thrown. */
  private async retrying<T>(what: string, signal: AbortSignal, fn: () => Promise<T>, retryNotFound = false): Promise<T> {
    const backoff = new Backoff(500, 10_000, this.random);
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        const retry = isFlannelError(err, 'FLN_ERR_KUBE_UNAVAILABLE') || (retryNotFound && isFlannelError(err, 'FLN_ERR_KUBE_NOT_FOUND'));
        if (!retry) throw err;
        const ms = backoff.next();
        this.log.warn({ code: err.code }, `${what}: ${err.message} (trying again in ${(ms / 1000).toFixed(1)} s)`);
        await sleep(ms, signal);
      }
    }
  }

  /**
   * The node-public-ip and node-public-ipv6 annotations of our Node, read at start: when they hold an address, it
   * replaces --public-ip / --public-ipv6 (as in flannel). Unparsable values are logged and ignored.
   */
  async nodePublicIpOverrides(signal: AbortSignal): Promise<{ publicIp?: string; publicIpv6?: string }> {
    const name = this.nodeName ??= await this.resolveNodeName(signal);
    const node = await this.retrying(`get node ${name}`, signal, () => this.client.getNode(name), true);
    const a = node.metadata.annotations ?? {};
    const out: { publicIp?: string; publicIpv6?: string } = {};
    const v4 = a[this.names.nodePublicIp]?.trim();
    const v6 = a[this.names.nodePublicIpv6]?.trim();
    if (v4) {
      if (parseIp4(v4) !== undefined) out.publicIp = v4;
      else this.log.warn(`ignoring annotation ${this.names.nodePublicIp}=${JSON.stringify(v4)} of node ${name}: not an IPv4 address`);
    }
    if (v6) {
      if (!v6.includes('.') && parseIp6(v6) !== undefined) out.publicIpv6 = v6;
      else this.log.warn(`ignoring annotation ${this.names.nodePublicIpv6}=${JSON.stringify(v6)} of node ${name}: not an IPv6 address`);
    }
    if (out.publicIp || out.publicIpv6) this.log.info({ node: name, ...out }, 'using the public IP of our Node\'s node-public-ip annotation');
    return out;
  }

  /**
   * Our lease is our Node's podCIDR(s): waits until it is assigned, checks it lies in the network, writes our
   * annotations through nodes/status (only those that differ) and, unless disabled, NetworkUnavailable=False.
   */
  async acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs, o: AcquireOptions): Promise<Lease> {
    this.families = { ipv4: cfg.ipv4 !== undefined, ipv6: cfg.ipv6 !== undefined };
    const name = this.nodeName ??= await this.resolveNodeName(o.signal);
    let node: KubeNode;
    let subnet: Cidr4 | undefined;
    let ipv6Subnet: Cidr6 | undefined;
    for (let attempt = 0; ; attempt++) {
      node = await this.retrying(`get node ${name}`, o.signal, () => this.client.getNode(name), true);
      const cidrs = podCidrsOf(node);
      subnet = cfg.ipv4 ? cidrs.v4 : undefined;
      ipv6Subnet = cfg.ipv6 ? cidrs.v6 : undefined;
      const missing = [cfg.ipv4 && !subnet ? 'IPv4' : '', cfg.ipv6 && !ipv6Subnet ? 'IPv6' : ''].filter(Boolean);
      if (missing.length === 0) break;
      const msg = `node "${name}" pod cidr not assigned (no ${missing.join(' and ')} entry in spec.podCIDRs): ` +
        'run kube-controller-manager with --allocate-node-cidrs=true and --cluster-cidr, or set spec.podCIDR(s) on the Node';
      if (attempt % 10 === 0) this.log.warn(msg); else this.log.debug(msg);
      await sleep(POD_CIDR_POLL_MS, o.signal);
    }
    if (cfg.ipv4 && subnet && !fits4(cfg.ipv4.network, subnet)) {
      throw new FlannelError('FLN_ERR_KUBE_POD_CIDR', `node "${name}" podCIDR ${formatCidr4(subnet)} is not in the Network ${formatCidr4(cfg.ipv4.network)} of ${this.netConfPath}: ` +
        'make the net-conf.json Network match kube-controller-manager\'s --cluster-cidr');
    }
    if (cfg.ipv6 && ipv6Subnet && !fits6(cfg.ipv6.network, ipv6Subnet)) {
      throw new FlannelError('FLN_ERR_KUBE_POD_CIDR', `node "${name}" IPv6 podCIDR ${formatCidr6(ipv6Subnet)} is not in the IPv6Network ${formatCidr6(cfg.ipv6.network)} of ${this.netConfPath}: ` +
        'make the net-conf.json IPv6Network match kube-controller-manager\'s --cluster-cidr');
    }
    const own = applyOverwrites(attrs, this.names, node.metadata.annotations);
    if (own.publicIp !== attrs.publicIp) this.log.info({ publicIp: describeNode(own) }, `using the PublicIP of annotation ${this.names.backendPublicIpOverwrite}`);
    const patch = annotationsToPatch(desiredAnnotations(own, this.names), node.metadata.annotations);
    if (patch) {
      await this.retrying(`annotate node ${name}`, o.signal, () => this.client.patchNodeStatus(name, { metadata: { annotations: patch } }));
      this.log.info({ node: name, annotations: Object.keys(patch) }, 'annotated our Node');
    }
    if (this.setNodeNetworkUnavailable) {
      await this.retrying(`set the NetworkUnavailable condition of node ${name}`, o.signal, () => this.client.patchNodeStatus(name, networkAvailablePatch(new Date())));
      this.log.info({ node: name }, 'set node condition NetworkUnavailable=False (FlannelIsUp)');
    }
    const lease = { ...(subnet ? { subnet } : {}), ...(ipv6Subnet ? { ipv6Subnet } : {}), attrs: own, expiresAtMs: Infinity, etcdLeaseId: '0' } as Lease;
    this.log.info({ node: name, subnet: describeSubnets(lease), publicIp: describeNode(own) }, 'acquired lease (the Node\'s podCIDR)');
    this.emit({ type: 'lease-acquired', lease, source: 'reservation' });
    return lease;
  }

  /** Nothing to renew in kube mode: returns when the signal fires. */
  runRenewal(_lease: Lease, o: { renewMarginMs: number; signal: AbortSignal }): Promise<void> {
    return new Promise((resolve) => {
      if (o.signal.aborted) resolve();
      else o.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  /**
   * The other Nodes as lease events until the signal fires: list, deliver the difference, watch from the list's
   * resourceVersion; list again when the watch ends (its timeout is the resync period) or on 410 Gone. When the
   * server cannot be reached the peers known stay as they are and the watch resumes, with backoff, from the last
   * resourceVersion seen (client-go's reflector does the same): the server then sends what was missed, or 410.
   */
  async runLeaseWatch(own: Lease, cb: WatchCallbacks, signal: AbortSignal): Promise<void> {
    const self = this.nodeName ?? this.env.NODE_NAME ?? '';
    const ownId = leaseIdentity(own);
    const watcher = new LeaseWatcher(own);
    const byNode = new Map<string, Lease>();
    const backoff = new Backoff(500, 30_000, this.random);
    const deliver = (events: LeaseEvent[]): void => {
      if (events.length === 0) return;
      cb.onEvents(events);
      this.emit({ type: 'peers', count: watcher.leases().length });
    };
    const peerOf = (node: KubeNode): Lease | undefined => {
      if (node.metadata.name === self) return undefined;
      const lease = leaseFromNode(node, this.names, this.families);
      if (lease && leaseIdentity(lease) === ownId) {
        this.log.warn({ node: node.metadata.name, subnet: describeSubnets(lease) }, 'another Node has our podCIDR; ignoring it');
        return undefined;
      }
      return lease;
    };
    const onNode = (type: 'ADDED' | 'MODIFIED' | 'DELETED', node: KubeNode): void => {
      const name = node.metadata.name;
      if (name === self && type === 'DELETED') {
        this.log.warn({ node: name, subnet: describeSubnets(own) }, 'our own Node was deleted from the API: the other nodes drop their routes to us; ' +
          'keeping our subnet and our routes to them, and annotating the Node again if it comes back with the same podCIDR');
      } else if (name === self) {
        this.reannotateOwnNode(node, own, signal);
      }
      const old = byNode.get(name);
      const lease = type === 'DELETED' ? undefined : peerOf(node);
      const events: LeaseEvent[] = [];
      if (old && (!lease || leaseIdentity(old) !== leaseIdentity(lease))) {
        byNode.delete(name);
        events.push(...watcher.delete({ subnet: old.subnet, ipv6Subnet: old.ipv6Subnet } as Parameters<LeaseWatcher['delete']>[0]).events);
      }
      if (lease) {
        byNode.set(name, lease);
        events.push(...watcher.put(lease).events);
      }
      deliver(events);
    };
    let watchStarted = 0;
    // Where a broken watch resumes, as client-go's reflector does: the last resourceVersion seen (an event's or a
    // bookmark's). Undefined means list first: at start, after the periodic end of a watch, after a 410 Gone (the
    // version was compacted away, or the apiserver's watch cache restarted past it) and after any other refusal.
    let rv: string | undefined;
    while (!signal.aborted) {
      watchStarted = 0;
      let resumed = false;
      try {
        if (rv === undefined) {
          const list = await this.client.listNodes();
          byNode.clear();
          for (const node of list.items) {
            const lease = peerOf(node);
            if (lease) byNode.set(node.metadata.name, lease);
          }
          const ownNode = self ? list.items.find((n) => n.metadata.name === self) : undefined;
          if (self && !ownNode) this.log.warn({ node: self }, 'our own Node is not in the Node list (deleted from the API?); keeping our subnet');
          else if (ownNode) this.reannotateOwnNode(ownNode, own, signal);
          deliver(watcher.reset([...byNode.values()]).events);
          this.emit({ type: 'peers', count: watcher.leases().length });
          if (signal.aborted) return;
          cb.onSynced?.();
          rv = list.resourceVersion;
        } else {
          resumed = true;
          this.log.info(`resuming the Node watch from resourceVersion ${rv}`);
        }
        watchStarted = Date.now();
        const end = await this.client.watchNodes(rv, {
          onEvent: (ev) => {
            if (ev.type === 'BOOKMARK') { rv = ev.resourceVersion; return; }
            rv = ev.node.metadata.resourceVersion ?? rv;
            onNode(ev.type, ev.node);
          },
        }, signal, Math.max(1, Math.round(this.resyncIntervalMs / 1000)));
        if (end === 'stopped' || signal.aborted) return;
        rv = undefined;
        if (Date.now() - watchStarted >= 1000) backoff.reset();
        else {
          // A watch that ends at once (a proxy closing it, say) must not turn into a hot list/watch loop.
          this.log.warn('the Node watch ended at once; re-listing Nodes after a pause');
          await sleep(backoff.next(), signal).catch(() => {});
          continue;
        }
        this.log.info(`Node watch ended (periodic re-list every ${Math.round(this.resyncIntervalMs / 1000)} s); re-listing Nodes`);
        this.emit({ type: 'watch-resync', reason: 'periodic', detail: 'the Node watch ended' });
        cb.onResync?.('the Node watch ended');
        continue;
      } catch (err) {
        if (isAbortError(err) || signal.aborted) return;
        if (!(err instanceof FlannelError) || !err.code.startsWith('FLN_ERR_KUBE_')) throw err;
        const ranAWhile = watchStarted > 0 && Date.now() - watchStarted >= 1000;
        if (ranAWhile) backoff.reset(); // a watch that ran a while: start the backoff anew
        // Only an unreachable server keeps the resume point: anything else is answered by a fresh list.
        if (err.code !== 'FLN_ERR_KUBE_UNAVAILABLE') rv = undefined;
        if (err.code === 'FLN_ERR_KUBE_WATCH_GONE') {
          this.log.info({ code: err.code }, `${err.message}; re-listing Nodes`);
          this.emit({ type: 'watch-resync', reason: 'compacted', detail: err.message });
          cb.onResync?.(err.message);
          // At once after a resumed watch (the version aged while we were away); a pause first when the version of
          // a fresh list is already gone: no hot loop of lists and 410s.
          if (ranAWhile || resumed) continue;
        } else {
          const level = err.code === 'FLN_ERR_KUBE_UNAVAILABLE' ? 'warn' : 'error';
          const next = rv === undefined ? 'listing again' : `resuming the watch from resourceVersion ${rv}`;
          this.log[level]({ code: err.code }, `Node watch: ${err.message} (keeping the ${watcher.leases().length} known peers; ${next})`);
          this.emit({ type: 'watch-resync', reason: 'error', detail: err.message });
          cb.onResync?.(err.message);
        }
      }
      await sleep(backoff.next(), signal).catch(() => {});
    }
  }

  /**
   * Our Node without our annotations while we run: it was deleted and created again (kubelet registers a deleted
   * Node anew, without them), or someone removed them. flannel leaves it so until it is restarted, and meanwhile no
   * peer routes to us; we patch them again, if the podCIDR is still our lease's (else a restart must take the new one).
   */
  private reannotateOwnNode(node: KubeNode, own: Lease, signal: AbortSignal): void {
    const name = node.metadata.name;
    const current = node.metadata.annotations;
    if (current?.[this.names.subnetKubeManaged] === 'true' || this.reannotating) return;
    let cidrs: ReturnType<typeof podCidrsOf>;
    try { cidrs = podCidrsOf(node); } catch (err) { this.log.error(`our Node ${name}: ${errorMessage(err)}`); return; }
    const same4 = (own.subnet && cidrs.v4) ? formatCidr4(own.subnet) === formatCidr4(cidrs.v4) : own.subnet === undefined;
    const same6 = (own.ipv6Subnet && cidrs.v6) ? formatCidr6(own.ipv6Subnet) === formatCidr6(cidrs.v6) : own.ipv6Subnet === undefined;
    if (!same4 || !same6) {
      this.log.error({ node: name, subnet: describeSubnets(own), podCIDRs: node.spec?.podCIDRs ?? node.spec?.podCIDR ?? null },
        'our Node came back without our annotations and with another (or no) podCIDR than our subnet: not annotating it; restart flanneld to take the new podCIDR');
      return;
    }
    const patch = annotationsToPatch(desiredAnnotations(own.attrs, this.names), current);
    if (!patch) return;
    this.reannotating = true;
    void (async () => {
      try {
        await this.retrying(`annotate node ${name} again`, signal, () => this.client.patchNodeStatus(name, { metadata: { annotations: patch } }));
        if (this.setNodeNetworkUnavailable) {
          await this.retrying(`set the NetworkUnavailable condition of node ${name}`, signal, () => this.client.patchNodeStatus(name, networkAvailablePatch(new Date())));
        }
        this.log.info({ node: name, annotations: Object.keys(patch) }, 'our Node is back without our annotations: annotated it again');
      } catch (err) {
        if (!isAbortError(err) && !signal.aborted) this.log.error({ code: isFlannelError(err) ? err.code : undefined }, `annotating our Node ${name} again: ${errorMessage(err)}`);
      } finally {
        this.reannotating = false;
      }
    })();
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

function fits4(network: Cidr4, c: Cidr4): boolean {
  return c.prefixLen >= network.prefixLen && cidrContains(network, c.ip) && cidrContains(network, lastIp(c));
}

function fits6(network: Cidr6, c: Cidr6): boolean {
  return c.prefixLen >= network.prefixLen && cidr6Contains(network, c.ip) && cidr6Contains(network, lastIp6(c));
}
