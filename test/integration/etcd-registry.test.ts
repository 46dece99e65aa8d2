// The etcd registry and subnet manager against a real etcd on loopback (random ports): guarded
// create and renew, a watch that reports compaction, and a lease watch that re-lists and diffs.
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { EtcdServer } from '../../deploy/local/etcd-server.js';
import { isFlannelError } from '../../subnet/errors.js';
import { createEtcdClient } from '../../subnet/etcd/etcd-client.js';
import { EtcdRegistry } from '../../subnet/etcd/etcd-registry.js';
import { EtcdSubnetManager } from '../../subnet/etcd/etcd-subnet-manager.js';
import { parseCidr4, parseIp4 } from '../../subnet/ip.js';
import type { LeaseEvent } from '../../subnet/lease.js';
import { parseNetworkConfig } from '../../subnet/network-config.js';

const PREFIX = '/coreos.com/network';
const port = 20000 + Math.floor(Math.random() * 20000);
const etcd = new EtcdServer({ listenIps: ['127.0.0.1'], clientPort: port, peerPort: port + 1 });
const log = pino({ level: 'silent' });
const cidr = (s: string) => parseCidr4(s)!;
const ip = (s: string) => parseIp4(s)!;

t.before(() => etcd.start());
t.teardown(() => etcd.destroy());

function newRegistry(t: Test): EtcdRegistry {
  const reg = new EtcdRegistry(createEtcdClient({ endpoints: etcd.endpoints() }), PREFIX);
  t.teardown(() => reg.close());
  return reg;
}

t.test('create is guarded: the second node loses and no key is overwritten', async (t) => {
  const reg = newRegistry(t);
  const subnet = cidr('10.9.1.0/24');
  const a = await reg.createLease(subnet, { publicIp: ip('192.0.2.1'), backendType: 'host-gw' }, 60);
  const err = await reg.createLease(subnet, { publicIp: ip('192.0.2.2'), backendType: 'host-gw' }, 60).catch((e: unknown) => e);
  t.ok(isFlannelError(err, 'FLN_ERR_LEASE_CONFLICT'), 'FLN_ERR_LEASE_CONFLICT');
  t.equal(await etcd.get(`${PREFIX}/subnets/10.9.1.0-24`), '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"host-gw"}');
  const renewed = await reg.updateLease(subnet, a.attrs, 60, a.etcdLeaseId);
  t.not(renewed.etcdLeaseId, a.etcdLeaseId, 'renewal moves the key to a fresh etcd lease');
  const stale = await reg.updateLease(subnet, a.attrs, 60, a.etcdLeaseId).catch((e: unknown) => e);
  t.ok(isFlannelError(stale, 'FLN_ERR_LEASE_CONFLICT'), 'a renewal with a stale etcd lease id is refused');
  await reg.deleteLease(subnet);
});

t.test('a watch from a compacted revision ends with the compaction, so the caller re-lists', async (t) => {
  const reg = newRegistry(t);
  const { revision } = await reg.listLeases();
  await etcd.put(`${PREFIX}/subnets/10.9.2.0-24`, '{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"host-gw"}');
  await etcd.put(`${PREFIX}/other`, 'x');
  const status = JSON.parse(await etcd.ctlChecked(['endpoint', 'status', '-w', 'json'])) as Array<{ Status: { header: { revision: number } } }>;
  await etcd.ctlChecked(['compact', String(status[0]!.Status.header.revision)]);
  const ended = await new Promise<string>((resolve) => {
    void reg.watch(String(BigInt(revision) + 1n), { onChanges: () => {}, onEnd: resolve });
  });
  t.match(ended, /compacted at revision \d+/);
});

t.test('runLeaseWatch delivers the snapshot, live changes, and the diff after an outage', async (t) => {
  const reg = newRegistry(t);
  const mgr = new EtcdSubnetManager(reg, { log, leaseTtlSec: 60 });
  // Our own lease comes from 10.8.100.0 up, so it never collides with the hand-made peers below.
  const cfg = parseNetworkConfig('{"Network":"10.8.0.0/16","SubnetMin":"10.8.100.0","Backend":{"Type":"host-gw"}}', 'test');
  const peer = (n: number) => `${PREFIX}/subnets/10.8.${n}.0-24`;
  const value = (n: number) => `{"PublicIP":"192.0.2.${n}","PublicIPv6":null,"BackendType":"host-gw"}`;
  await etcd.put(peer(50), value(50));
  const own = await mgr.acquireLease(cfg, { publicIp: ip('192.0.2.1'), backendType: 'host-gw' }, { signal: AbortSignal.timeout(10_000) });
  const seen: string[] = [];
  const lost: string[] = [];
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  const record = (evs: readonly LeaseEvent[]) => { for (const e of evs) seen.push(`${e.kind} ${e.lease.subnet.ip >>> 8 & 255}`); };
  const running = mgr.runLeaseWatch(own, { onEvents: record, onOwnLeaseLost: (r) => lost.push(r) }, stop.signal).catch(() => {});
  const until = async (want: string) => { for (let i = 0; i < 100 && !seen.includes(want); i++) await sleep(100); t.ok(seen.includes(want), want); };
  await until('added 50');
  await etcd.put(peer(51), value(51));
  await until('added 51');
  await etcd.stop();
  await etcd.start();
  await etcd.ctlChecked(['del', peer(50)]);
  await until('removed 50');
  t.same(lost, [], 'our own lease was never reported lost');
  await etcd.ctlChecked(['del', `${PREFIX}/subnets/${own.subnet.ip >>> 24}.${own.subnet.ip >>> 16 & 255}.${own.subnet.ip >>> 8 & 255}.0-24`]);
  for (let i = 0; i < 50 && lost.length === 0; i++) await sleep(100);
  t.match(lost[0], /deleted/, 'deleting our own key is reported');
  stop.abort();
  await running;
});
