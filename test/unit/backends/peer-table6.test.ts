// The IPv6 peer table (PeerTable family 6, layout.ts PEER_ENTRY6 ↔ layout.h PE6_*) and the addon's checks of
// an IPv6 engine: entries land where the C side reads them, a table takes peers of its own family only (refused
// before the seqlock opens, so the table stays published and unchanged), and engineCreate refuses an IPv6 engine
// over an IPv4 table, an IPv6 engine outside vxlan mode, and one without its IPv6 addresses. No root needed.
import t from 'tap';
// The compiled modules (npm run build), as the engine's workers use them.
import { PEER_ENTRY6, PEER_TABLE, peerTableWords } from '../../../dist/backends/datapath/layout.js';
import { ENGINE_MODE, datapathAddon } from '../../../dist/backends/datapath/native/datapath-addon.js';
import { type EnginePeer, type EnginePeer6, PeerTable, ip6Bytes, ip6Words } from '../../../dist/backends/datapath/peer-table.js';
import { parseIp6 } from '../../../dist/lib/ip6.js';

const ip6 = (text: string): bigint => {
  const v = parseIp6(text);
  if (v === undefined) throw new Error(text);
  return v;
};

t.test('IPv6 entries are written where layout.h reads them', async (t) => {
  const table = new PeerTable<EnginePeer6>(3, 1, 6);
  t.equal(table.words.length, peerTableWords(3, 6), 'sized for 16-word entries');
  t.equal(table.words[PEER_TABLE.FAMILY], 6, 'PT_FAMILY 6');
  const peers: EnginePeer6[] = [
    { key: 'a', subnet: ip6('2001:db8:100:2::'), prefixLen: 64, publicIp: ip6('2001:db8:ff::2'), port: 8472, mac: Uint8Array.of(0x0e, 0, 0, 0, 6, 2), partialChecksums: true },
    { key: 'b', subnet: ip6('2001:db8:100:3::'), prefixLen: 64, publicIp: ip6('2001:db8:ff::3'), port: 8472, mac: Uint8Array.of(0x0e, 1, 2, 3, 4, 5) },
  ];
  table.replace(peers);
  t.equal(table.words[PEER_TABLE.COUNT], 2);
  t.equal(table.words[PEER_TABLE.SEQ] % 2, 0, 'published');
  const at = (i: number, field: number) => table.words[PEER_TABLE.HEADER_WORDS + i * PEER_ENTRY6.WORDS + field];
  t.same([0, 1, 2, 3].map((k) => at(0, PEER_ENTRY6.SUBNET + k)), [0x20010db8, 0x01000002, 0, 0], 'subnet words, big-endian');
  t.same([0, 1, 2, 3].map((k) => at(1, PEER_ENTRY6.PUBLIC_IP + k)), [0x20010db8, 0x00ff0000, 0, 3], 'PublicIPv6 words');
  t.equal(at(0, PEER_ENTRY6.PREFIX), 64);
  t.equal(at(0, PEER_ENTRY6.PORT), 8472);
  t.equal(at(1, PEER_ENTRY6.MAC_HI), 0x0e01);
  t.equal(at(1, PEER_ENTRY6.MAC_LO), 0x02030405);
  t.equal(at(0, PEER_ENTRY6.FLAGS), 1, 'AcceptsPartialChecksums');
  t.equal(at(1, PEER_ENTRY6.FLAGS), 0);
  t.same([...ip6Bytes(ip6('2001:db8::1'))], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 'ip6Bytes');
  t.same(ip6Words(ip6('::ffff:1.2.3.4')), [0, 0, 0xffff, 0x01020304], 'ip6Words');

  const seq = table.words[PEER_TABLE.SEQ];
  const v4: EnginePeer = { key: 'x', subnet: 0x0af40200, prefixLen: 24, publicIp: 0xc0000202, port: 8472 };
  t.throws(() => (table as unknown as PeerTable<EnginePeer>).replace([v4]), TypeError, 'an IPv4 peer is refused');
  t.equal(table.words[PEER_TABLE.SEQ], seq, 'before the seqlock opened: the table is as it was');
  t.equal(table.words[PEER_TABLE.COUNT], 2);

  const t4 = new PeerTable<EnginePeer>(2, 1);
  t.equal(t4.words[PEER_TABLE.FAMILY], 0, 'an IPv4 table keeps PT_FAMILY 0 (its layout is unchanged)');
  t.throws(() => (t4 as unknown as PeerTable<EnginePeer6>).replace([peers[0] as EnginePeer6]), TypeError, 'and refuses IPv6 peers');
});

t.test('engineCreate checks an IPv6 engine', async (t) => {
  const addon = datapathAddon();
  const fd = addon.eventfdOpen();
  t.teardown(() => addon.closeFd(fd));
  const t6 = new PeerTable<EnginePeer6>(2, 1, 6);
  const t4 = new PeerTable<EnginePeer>(2, 1);
  const base = {
    mode: ENGINE_MODE.VXLAN, devFd: fd, udpFd: fd, stopFd: fd, devIp: 0, ownSubnet: 0, ownMask: 0, mtu: 1430, vni: 1,
    devMac: new Uint8Array(6), txFds: new Int32Array(0), offload: false, family: 6 as const,
    devIp6: ip6Bytes(ip6('2001:db8:100:1::')), ownSubnet6: ip6Bytes(ip6('2001:db8:100:1::')), ownPrefix6: 64,
  };
  const engine = addon.engineCreate({ ...base, peerTable: t6.words, stats: t6.region(0) });
  t.ok(engine, 'an IPv6 vxlan engine over an IPv6 table');
  addon.engineDestroy(engine);
  t.throws(() => addon.engineCreate({ ...base, peerTable: t4.words, stats: t4.region(0) }), { code: 'ERR_INVALID_ARG_VALUE', message: /family/ }, 'not over an IPv4 table');
  t.throws(() => addon.engineCreate({ ...base, family: 4, peerTable: t6.words, stats: t6.region(0) }), { code: 'ERR_INVALID_ARG_VALUE', message: /family/ }, 'nor an IPv4 engine over an IPv6 table');
  t.throws(() => addon.engineCreate({ ...base, mode: ENGINE_MODE.UDP, peerTable: t6.words, stats: t6.region(0) }), { code: 'ERR_INVALID_ARG_VALUE', message: /vxlan/ }, 'IPv6 is the vxlan mode\'s only');
  t.throws(() => addon.engineCreate({ ...base, devIp6: new Uint8Array(4), peerTable: t6.words, stats: t6.region(0) }), { code: 'ERR_INVALID_ARG_TYPE' }, 'the IPv6 addresses are 16 bytes');
});
