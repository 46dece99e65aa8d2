// The composition root: builds the subnet manager, the backend and the process plumbing, and runs
// them in flannel's start order. The only module that knows every layer; it holds no policy itself.
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import type { DatapathThreading, Network } from '../backends/backend.js';
import { IptablesRules } from '../backends/kernel/masquerade.js';
import { createBackend } from '../backends/registry.js';
import { defaultSpinUs } from '../backends/datapath/packet-engine.js';
import { sleep } from '../subnet/backoff.js';
import { FlannelError, errorMessage, isAbortError } from '../lib/errors.js';
import { createEtcdClient } from '../subnet/etcd/etcd-client.js';
import { EtcdRegistry } from '../subnet/etcd/etcd-registry.js';
import { EtcdSubnetManager } from '../subnet/etcd/etcd-subnet-manager.js';
import { KubeClient, loadKubeClientConfig } from '../subnet/kube/kube-client.js';
import { KubeSubnetManager } from '../subnet/kube/kube-subnet-manager.js';
import type { SubnetEvent, SubnetManager } from '../subnet/subnet-manager.js';
import { formatCidr4 } from '../lib/ip.js';
import { formatCidr6, formatIp6 } from '../lib/ip6.js';
import { type Lease, describeSubnets } from '../subnet/lease.js';
import type { NetworkConfig } from '../subnet/network-config.js';
import { findExternalInterface } from './external-interface.js';
import { HealthServer, type HealthState } from './health.js';
import { type DaemonMetrics, createMetrics } from './metrics.js';
import type { Flags } from './options.js';
import { checkHostSysctls } from './host-checks.js';
import { sdNotify } from './sd-notify.js';
import { readPreviousIpv6Subnet, readPreviousSubnet, writeSubnetEnv } from './subnet-env.js';
import { type Watchdog, startWatchdog } from './watchdog.js';

const ROUTE_CHECK_INTERVAL_MS = 10_000;

export async function runDaemon(flags: Flags, log: Logger, signal: AbortSignal): Promise<void> {
  const health: HealthState = { ready: false, reason: 'starting' };
  let network: Network | undefined;
  const metrics = createMetrics({ network: () => network });
  const { registry } = metrics;
  // The store's client first: bad TLS files or a bad kubeconfig are reported before anything listens.
  const manager = createSubnetManager(flags, log, (ev) => metrics.subnetEvent(ev));
  const server = flags['healthz-port'] > 0
    ? new HealthServer({ ip: flags['healthz-ip'], port: flags['healthz-port'], metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }) }, () => health)
    : undefined;
  await server?.listen().catch(async (err: unknown) => { await manager.close(); throw err; });
  let rules: IptablesRules[] = [];
  let watchdog: Watchdog | undefined;
  const stopFaults = installFaultInjection(log, () => network);
  try {
    health.reason = flags['kube-subnet-mgr'] ? `waiting for the network config in ${flags['net-config-path']}` : 'waiting for the network config in etcd';
    const config = withNodeOverrides(await manager.waitForNetworkConfig(signal, (err) => { health.reason = `network config: ${err.message}`; }), flags);
    await checkHostSysctls(log);
    // kube mode: our Node's node-public-ip(v6) annotations override --public-ip(v6), as in flannel.
    const fromNode = manager instanceof KubeSubnetManager ? await manager.nodePublicIpOverrides(signal) : {};
    const ext = await findExternalInterface({
      iface: flags.iface, ifaceRegex: flags['iface-regex'], ifaceCanReach: flags['iface-can-reach'], publicIp: fromNode.publicIp ?? flags['public-ip'],
      publicIpv6: fromNode.publicIpv6 ?? flags['public-ipv6'], ipv6: config.ipv6 !== undefined, ipv4: config.ipv4 !== undefined,
    });
    log.info({ iface: ext.name, mtu: ext.mtu, ...(ext.publicIp6 !== undefined ? { publicIpv6: formatIp6(ext.publicIp6) } : {}) }, 'using external interface');
    const queues = flags['datapath-queues'] || Math.max(1, Math.floor(availableParallelism() / 2));
    const workers = flags['datapath-threads'] as DatapathThreading['workers'];
    const threading = { workers, spinUs: flags['datapath-spin-us'] >= 0 ? flags['datapath-spin-us'] : defaultSpinUs(workers) };
    const backend = createBackend(config.backendType, { ext, config, log, offload: flags['datapath-offload'], queues, threading });
    const attrs = await backend.prepare();
    health.reason = 'acquiring a subnet lease';
    const previousSubnet = config.ipv4 ? readPreviousSubnet(flags['subnet-file']) : undefined;
    const previousIpv6Subnet = config.ipv6 ? readPreviousIpv6Subnet(flags['subnet-file']) : undefined;
    const lease = await manager.acquireLease(config, attrs, { signal, ...(previousSubnet ? { previousSubnet } : {}), ...(previousIpv6Subnet ? { previousIpv6Subnet } : {}) });
    network = await backend.start(lease);
    rules = iptablesRules(flags, config, lease);
    for (const r of rules) await r.ensure();
    writeSubnetFile(flags, log, {
      ...(config.ipv4 && lease.subnet ? { network: config.ipv4.network, subnet: lease.subnet } : {}),
      mtu: backend.mtu, ipMasq: flags['ip-masq'],
      ...(config.ipv6 && lease.ipv6Subnet ? { ipv6Network: config.ipv6.network, ipv6Subnet: lease.ipv6Subnet } : {}),
    });
    Object.assign(health, { ready: true, reason: '' });
    notify(log, `READY=1\nSTATUS=subnet ${describeSubnets(lease)}`);
    watchdog = startWatchdog(log.child({ component: 'watchdog' }));
    log.info({ subnet: describeSubnets(lease), backend: backend.type }, 'running');
    await runLoops({ flags, log, manager, network, rules, lease, metrics }, signal);
  } finally {
    stopFaults();
    health.ready = false;
    watchdog?.stop();
    notify(log, 'STOPPING=1');
    await network?.close();
    for (const r of rules) await r.remove().catch((err) => log.warn(`removing ${r.family === 6 ? 'ip6tables' : 'iptables'} rules: ${errorMessage(err)}`));
    await manager.close();
    await server?.close();
  }
}

/** The subnet store the flags choose: the Kubernetes API with --kube-subnet-mgr (no etcd client is made), else etcd. */
function createSubnetManager(flags: Flags, log: Logger, onEvent: (ev: SubnetEvent) => void): SubnetManager {
  if (flags['kube-subnet-mgr']) {
    const client = new KubeClient(loadKubeClientConfig({ apiUrl: flags['kube-api-url'], kubeconfigFile: flags['kubeconfig-file'] }));
    log.info({ server: client.config.server, source: client.config.source }, 'Kubernetes subnet manager');
    return new KubeSubnetManager(client, {
      log: log.child({ component: 'subnet/kube' }), netConfPath: flags['net-config-path'], annotationPrefix: flags['kube-annotation-prefix'],
      setNodeNetworkUnavailable: flags['set-node-network-unavailable'], onEvent,
    });
  }
  return new EtcdSubnetManager(new EtcdRegistry(createEtcdClient({
    endpoints: flags['etcd-endpoints'].split(',').map((s) => s.trim()),
    certFile: flags['etcd-certfile'], keyFile: flags['etcd-keyfile'], caFile: flags['etcd-cafile'],
    username: flags['etcd-username'], password: flags['etcd-password'],
  }), flags['etcd-prefix']), { log: log.child({ component: 'subnet/etcd' }), leaseTtlSec: flags['subnet-lease-ttl'], onEvent });
}

/** flannel's masquerade and forward rules for each enabled family (ip6tables for the IPv6 network). */
function iptablesRules(flags: Flags, config: NetworkConfig, lease: Lease): IptablesRules[] {
  const masq = flags['ip-masq'];
  const randomFully = !flags['ip-masq-fully-random-disable'];
  const forward = flags['iptables-forward-rules'];
  const rules: IptablesRules[] = [];
  if (config.ipv4 && lease.subnet) {
    const network = formatCidr4(config.ipv4.network);
    rules.push(new IptablesRules({
      ...(masq ? { masq: { network, subnet: formatCidr4(lease.subnet), randomFully } } : {}),
      ...(forward ? { forwardNetwork: network } : {}),
    }));
  }
  if (config.ipv6 && lease.ipv6Subnet) {
    const network = formatCidr6(config.ipv6.network);
    rules.push(new IptablesRules({
      family: 6,
      ...(masq ? { masq: { network, subnet: formatCidr6(lease.ipv6Subnet), randomFully } } : {}),
      ...(forward ? { forwardNetwork: network } : {}),
    }));
  }
  return rules;
}

/** Per-node choices that flags may override in the shared network config. */
function withNodeOverrides(config: NetworkConfig, flags: Flags): NetworkConfig {
  if (!flags['vxlan-datapath'] || config.backendType !== 'vxlan') return config;
  return { ...config, backend: { ...config.backend, Datapath: flags['vxlan-datapath'] } };
}

/**
 * Test hook, off unless FLANNELD_FAULT_INJECTION=1: SIGUSR2 makes the packet engine's TX worker
 * crash, to prove that a dead worker is reported and restarted.
 */
function installFaultInjection(log: Logger, network: () => Network | undefined): () => void {
  if (process.env.FLANNELD_FAULT_INJECTION !== '1') return () => {};
  const onSignal = (): void => {
    log.warn('fault injection: crashing the packet engine TX worker');
    network()?.crashWorker?.('tx');
  };
  process.on('SIGUSR2', onSignal);
  return () => process.off('SIGUSR2', onSignal);
}

function writeSubnetFile(flags: Flags, log: Logger, env: Parameters<typeof writeSubnetEnv>[1]): void {
  writeSubnetEnv(flags['subnet-file'], env);
  log.info({ file: flags['subnet-file'] }, 'wrote subnet file');
}

function notify(log: Logger, state: string): void {
  try {
    sdNotify(state);
  } catch (err) {
    log.warn(`sd_notify failed: ${errorMessage(err)}`);
  }
}

interface Running {
  readonly flags: Flags;
  readonly log: Logger;
  readonly manager: SubnetManager;
  readonly network: Network;
  readonly rules: readonly IptablesRules[];
  readonly lease: Lease;
  readonly metrics: DaemonMetrics;
}

/**
 * The steady state, all under one signal: lease watch → network.apply, periodic reconcile, lease
 * renewal and iptables resync. Resolves on stop; rejects when the lease is lost or a loop fails.
 */
async function runLoops(r: Running, outer: AbortSignal): Promise<void> {
  const inner = new AbortController();
  const stop = (): void => inner.abort();
  outer.addEventListener('abort', stop, { once: true });
  let lost: FlannelError | undefined;
  const watch = r.manager.runLeaseWatch(r.lease, {
    onEvents: (events) => {
      void r.network.apply(events).then(() => r.metrics.leaseEventsApplied(events), (err: unknown) => {
        r.metrics.leaseEventsFailed(events);
        r.log.error(`applying lease events: ${errorMessage(err)}`);
      });
    },
    onOwnLeaseLost: (reason) => {
      lost = new FlannelError('FLN_ERR_LEASE_REVOKED', `Lease has been revoked: ${reason}. Shutting down daemon.`);
      r.log.error({ code: lost.code }, lost.message);
      inner.abort();
    },
    onSynced: () => { void reconcileOnce(r); },
  }, inner.signal);
  const loops = [
    watch,
    every(ROUTE_CHECK_INTERVAL_MS, () => reconcileOnce(r), inner.signal),
    every(r.flags['iptables-resync'] * 1000, async () => {
      for (const rules of r.rules) {
        if (await rules.resync()) r.log.info(`${rules.family === 6 ? 'ip6tables' : 'iptables'} rules were missing and have been restored`);
      }
    }, inner.signal),
    r.manager.runRenewal(r.lease, { renewMarginMs: r.flags['subnet-lease-renew-margin'] * 60_000, signal: inner.signal }),
  ].map((p) => p.catch((err: unknown) => {
    if (!isAbortError(err)) { lost ??= err instanceof FlannelError ? err : new FlannelError('FLN_ERR_KERNEL_OP', errorMessage(err), { cause: err }); }
    inner.abort();
  }));
  await Promise.all(loops);
  outer.removeEventListener('abort', stop);
  if (lost) throw lost;
}

async function reconcileOnce(r: Running): Promise<void> {
  try {
    r.metrics.reconciled(await r.network.reconcile());
  } catch (err) {
    r.metrics.reconciled(undefined);
    r.log.warn(`reconcile failed: ${errorMessage(err)}`);
  }
}

async function every(intervalMs: number, fn: () => Promise<void>, signal: AbortSignal): Promise<void> {
  for (;;) {
    await sleep(intervalMs, signal);
    try {
      await fn();
    } catch (err) {
      if (isAbortError(err)) throw err;
    }
  }
}
