// The dual peer table (PeerTable family 46, layout.ts PEER_ENTRY46 ↔ layout.h PE46_*) of flannel-wg in the
// single-device wireguard modes, and the addon's checks of a dual engine: entries land where the C side reads
// them (the PE6 layout with the IPv4 subnet, prefix and PublicIP in words 11, 12 and 14, NO_SUBNET for a missing
// family), a dual table takes dual peers only and other tables none, and engineCreate refuses a dual engine
// outside wireguard mode, with offloads, or over a table of another family. No root needed.
import t from 'tap';
// The compiled modules (npm run build), as the engine's workers use them.
import { PEER_ENTRY46, PEER_ENTRY6, PEER_TABLE, peerTableWords } from '../../../dist/backends/datapath/layout.js';
import { ENGINE_MODE, datapathAddon } from '../../../dist/backends/datapath/native/datapath-addon.js';
import { type EnginePeer6, type EnginePeerDual, PeerTable, ip6Bytes } from '../../../dist/backends/datapath/peer-table.js';
import { WgTable } from '../../../dist/backends/wireguard/session/wg-table.js';
import { WIREGUARD_TIMERS, monotonicMs } from '../../../dist/backends/wireguard/session/session-timers.js';
import { parseIp4 } from '../../../dist/lib/ip.js';
import { parseIp6 } from '../../../dist/lib/ip6.js';

const ip4 = (s: string) => parseIp4(s) as number;
const ip6 = (s: string) => parseIp6(s) as bigint;

t.test('dual entries are written where layout.h reads them', async (t) => {
  const table = new PeerTable<EnginePeerDual>(3, 1, 46);
  t.equal(table.words.length, peerTableWords(3, 46), 'sized for 16-word entries');
  t.equal(table.words[PEER_TABLE.FAMILY], 46, 'PT_FAMILY 46');
  t.same([PEER_ENTRY46.SUBNET4, PEER_ENTRY46.PREFIX4, PEER_ENTRY46.PUBLIC_IP4, PEER_ENTRY46.NO_SUBNET], [11, 12, 14, 255], 'layout.h PE46_*');
  table.replace([
    { key: 'a', dual: true, subnet4: { ip: ip4('10.244.2.0'), prefixLen: 24 }, subnet6: { ip: ip6('fd00:10:244:2::'), prefixLen: 64 }, publicIp: ip4('192.0.2.2'), publicIp6: ip6('2001:db8::2'), port: 51820 },
    { key: 'b', dual: true, subnet4: { ip: ip4('10.244.3.0'), prefixLen: 24 }, publicIp: ip4('192.0.2.3'), port: 51000 },
  ]);
  const at = (i: number, field: number) => table.words[PEER_TABLE.HEADER_WORDS + i * PEER_ENTRY6.WORDS + field];
  t.same([0, 1, 2, 3].map((k) => at(0, PEER_ENTRY6.SUBNET + k)), [0xfd000010, 0x02440002, 0, 0], 'IPv6 subnet words');
  t.equal(at(0, PEER_ENTRY6.PREFIX), 64);
  t.same([0, 1, 2, 3].map((k) => at(0, PEER_ENTRY6.PUBLIC_IP + k)), [0x20010db8, 0, 0, 2], 'PublicIPv6 words');
  t.equal(at(0, PEER_ENTRY46.SUBNET4), ip4('10.244.2.0'));
  t.equal(at(0, PEER_ENTRY46.PREFIX4), 24);
  t.equal(at(0, PEER_ENTRY46.PUBLIC_IP4), ip4('192.0.2.2'));
  t.equal(at(0, PEER_ENTRY6.PORT), 51820);
  t.equal(at(1, PEER_ENTRY6.PREFIX), 255, 'no IPv6 subnet: NO_SUBNET');
  t.same([0, 1, 2, 3].map((k) => at(1, PEER_ENTRY6.PUBLIC_IP + k)), [0, 0, 0, 0], 'no PublicIPv6: zeros');
  t.equal(at(1, PEER_ENTRY6.PORT), 51000);
  t.not(at(0, PEER_ENTRY6.SLOT), at(1, PEER_ENTRY6.SLOT), 'slots of their own');
  const seq = table.words[PEER_TABLE.SEQ];
  const v6: EnginePeer6 = { key: 'c', subnet: ip6('fd00::'), prefixLen: 64, publicIp: ip6('2001:db8::9'), port: 1 };
  t.throws(() => (table as unknown as PeerTable<EnginePeer6>).replace([v6]), TypeError, 'a dual table refuses an IPv6 peer');
  t.throws(() => new PeerTable<EnginePeer6 | EnginePeerDual>(2, 1, 6).replace([{ key: 'd', dual: true, publicIp: 0, port: 1 }]), TypeError, 'an IPv6 table refuses a dual peer');
  t.equal(table.words[PEER_TABLE.SEQ], seq, 'refused before the seqlock opens');
});

t.test('engineCreate checks a dual engine', async (t) => {
  const addon = datapathAddon();
  const fd = addon.eventfdOpen();
  const [r, w] = addon.pipeOpen();
  t.teardown(() => { addon.closeFd(fd); addon.closeFd(r); addon.closeFd(w); });
  const dual = new PeerTable<EnginePeerDual>(2, 1, 46);
  const six = new PeerTable<EnginePeer6>(2, 1, 6);
  const wg = new WgTable(64, 4, WIREGUARD_TIMERS, monotonicMs, 6);
  const base = {
    mode: ENGINE_MODE.WIREGUARD, devFd: fd, udpFd: fd, stopFd: fd, devIp: ip4('10.244.1.0'), ownSubnet: ip4('10.244.1.0'), ownMask: 0xffffff00, mtu: 1420, vni: 0,
    devMac: new Uint8Array(6), txFds: new Int32Array(0), offload: false, family: 6 as const, dual: true, wgTable: new Uint8Array(wg.buffer), ctrlFd: w,
    devIp6: ip6Bytes(ip6('fd00:10:244:1::')), ownSubnet6: ip6Bytes(ip6('fd00:10:244:1::')), ownPrefix6: 64,
  };
  const engine = addon.engineCreate({ ...base, peerTable: dual.words, stats: dual.region(0) });
  t.ok(engine, 'a dual wireguard engine over a dual table');
  addon.engineDestroy(engine);
  const e4 = addon.engineCreate({ ...base, family: 4, peerTable: dual.words, stats: dual.region(0) });
  t.ok(e4, 'over outer IPv4 too');
  addon.engineDestroy(e4);
  t.throws(() => addon.engineCreate({ ...base, peerTable: six.words, stats: six.region(0) }), { code: 'ERR_INVALID_ARG_VALUE', message: /family/ }, 'not over an IPv6 table');
  t.throws(() => addon.engineCreate({ ...base, dual: false, peerTable: dual.words, stats: dual.region(0) }), { code: 'ERR_INVALID_ARG_VALUE', message: /family/ }, 'nor a family-6 engine over a dual table');
  t.throws(() => addon.engineCreate({ ...base, offload: true, peerTable: dual.words, stats: dual.region(0) }), { code: 'ERR_INVALID_ARG_VALUE', message: /dual/ }, 'no offloads');
  t.throws(() => addon.engineCreate({ ...base, mode: ENGINE_MODE.VXLAN, peerTable: dual.words, stats: dual.region(0) }), { code: 'ERR_INVALID_ARG_VALUE', message: /dual/ }, 'wireguard mode only');
});
