// WireGuardSessions over IPv6 endpoints (flannel-wg-v6): two nodes with family-6 WgTables back to back,
// addresses as bigints. The handshake goes to the lease's [PublicIPv6]:port, a handshake from another IPv6
// source moves the endpoint in the table (WGP_EP6_*), setPeers puts it back, the cookie of a reply under
// load is bound to the IPv6 source (the retry's mac2 verifies only from it), and the per-source rate limit
// takes IPv6 sources.
import t from 'tap';
import { pino } from 'pino';
import * as wg from '../../backends/wireguard/protocol/index.js';
import { WIREGUARD_TIMERS } from '../../backends/wireguard/session/session-timers.js';
import { WireGuardSessions } from '../../backends/wireguard/session/sessions.js';
import { type WgIp, WgTable, wgSubnetFold6 } from '../../backends/wireguard/session/wg-table.js';

const log = pino({ level: 'silent' });
const PORT = 51821;
const IP = { A: 0x20010db8000000000000000000000001n, B: 0x20010db8000000000000000000000002n } as const;
const SUBNET = { A: 0xfd000010024400010000000000000000n, B: 0xfd000010024400020000000000000000n } as const;
const SLOT = { A: 5, B: 3 } as const;
type Name = 'A' | 'B';
interface Sent { from: Name; msg: Buffer; ip: WgIp; port: number }

function setup(opts: { loadB?: number } = {}) {
  let now = 1_000_000;
  const sent: Sent[] = [];
  const make = (name: Name) => {
    const keys = wg.generateKeyPair();
    const table = new WgTable(16, 8, WIREGUARD_TIMERS, () => now, 6);
    const sessions = new WireGuardSessions({
      privateKey: keys.privateKey, table, log,
      ...(name === 'B' && opts.loadB !== undefined ? { underLoadThreshold: opts.loadB } : {}),
      send: (msg, ip, port) => { sent.push({ from: name, msg: Buffer.from(msg), ip, port }); },
      counters: () => ({ txPackets: 0n, rxPackets: 0n, rxKeepalives: 0n }),
      now: () => now, wallNow: () => 1_700_000_000_000 + now, random: () => 0,
    });
    return { name, keys, table, sessions };
  };
  const A = make('A');
  const B = make('B');
  const peerOf = (n: typeof A) => ({
    key: `${n.name}6`, publicKey: n.keys.publicKey, slot: n === A ? SLOT.A : SLOT.B, subnet: wgSubnetFold6(SUBNET[n.name]),
    endpointIp: IP[n.name], endpointPort: PORT, keepaliveSeconds: 0,
  });
  const node = (n: Name) => (n === 'A' ? A : B);
  /** Delivers handshake messages until none is left; the source is the sender's address unless `srcOf` says otherwise. */
  const pump = (srcOf: (s: Sent) => { ip: WgIp; port: number } = (s) => ({ ip: IP[s.from], port: PORT }), lose: (s: Sent) => boolean = () => false) => {
    for (let i = 0; i < sent.length; i++) {
      const s = sent[i] as Sent;
      if (s.msg[0] === wg.MESSAGE_TRANSPORT || (s as { done?: boolean }).done) continue;
      (s as { done?: boolean }).done = true;
      if (lose(s)) continue;
      const to = s.ip === IP.A ? 'A' : s.ip === IP.B ? 'B' : undefined;
      if (!to) continue;
      const src = srcOf(s);
      node(to).sessions.handleMessage(s.msg, src.ip, src.port);
    }
  };
  return { A, B, sent, peerOf, pump, advance: (ms: number) => { now += ms; } };
}

t.test('a handshake between IPv6 endpoints, roaming to another IPv6 source and back', async (t) => {
  const { A, B, sent, peerOf, pump, advance } = setup();
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  const init = sent.find((s) => s.from === 'A' && s.msg[0] === wg.MESSAGE_INITIATION);
  t.ok(init, 'A greeted B at once');
  t.equal(init?.ip, IP.B, 'to B\'s PublicIPv6 (a bigint)');
  t.equal(init?.port, PORT);
  pump();
  const resp = sent.find((s) => s.from === 'B' && s.msg[0] === wg.MESSAGE_RESPONSE);
  t.equal(resp?.ip, IP.A, 'B responded to A\'s IPv6 source');
  t.equal(A.sessions.stats().handshakesCompleted + B.sessions.stats().handshakesCompleted, 2, 'both completed');
  t.equal(A.table.readKeypair(A.table.current(SLOT.B) as number).peerSubnet, wgSubnetFold6(SUBNET.B), 'A\'s keypair carries the fold of B\'s IPv6 subnet');
  t.equal(A.sessions.stats().peers[0]?.endpoint, '[2001:db8::2]:51821', 'the endpoint as text');
  t.equal(B.table.endpoint(SLOT.A), undefined, 'no roamed endpoint: A spoke from its lease\'s address');

  // A re-handshakes from another address (its NAT moved): B follows it, in the table C reads.
  const roamed = 0x20010db8000000090000000000000042n;
  advance(1_000); // past the per-peer initiation limit (50 a second)
  A.sessions.setPeers([]);
  A.sessions.setPeers([peerOf(B)]);
  pump((s) => (s.from === 'A' ? { ip: roamed, port: 40000 } : { ip: IP[s.from], port: PORT }));
  t.same(B.table.endpoint(SLOT.A), { ip: roamed, port: 40000 }, 'B\'s table: A\'s endpoint moved to [2001:db8:0:9::42]:40000');
  t.equal(B.sessions.stats().endpointUpdates, 1, 'counted');
  t.equal(B.sessions.stats().peers[0]?.endpoint, '[2001:db8:0:9::42]:40000');
  B.sessions.setPeers([peerOf(A)]);
  t.equal(B.table.endpoint(SLOT.A), undefined, 'setPeers puts it back to the lease\'s (flannel #1770)');
});

t.test('under load: the cookie is bound to the IPv6 source; the rate limit takes IPv6 sources', async (t) => {
  const { A, B, sent, peerOf, pump, advance } = setup({ loadB: 0 }); // B always under load
  const fromA = (s: Sent) => ({ ip: IP[s.from], port: PORT });
  const losesBsInitiations = (s: Sent) => s.from === 'B' && s.msg[0] === wg.MESSAGE_INITIATION; // only A initiates
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  pump(fromA, losesBsInitiations);
  t.equal(B.sessions.stats().sent.cookieReply, 1, 'no mac2: a cookie reply');
  const reply = sent.find((s) => s.from === 'B' && s.msg[0] === wg.MESSAGE_COOKIE_REPLY);
  t.equal(reply?.ip, IP.A, 'sent to A\'s IPv6 source');
  advance(5_500);
  A.sessions.tick();
  const retry = sent.filter((s) => s.from === 'A' && s.msg[0] === wg.MESSAGE_INITIATION)[1];
  t.ok(retry, 'A retried with mac2');
  // From another source the cookie does not verify: another cookie reply, no response.
  B.sessions.handleMessage(retry?.msg as Buffer, 0x20010db8000000070000000000000001n, PORT);
  t.equal(B.sessions.stats().drops.bad_mac2, 2, 'mac2 of A\'s cookie fails from another IPv6 address');
  t.equal(B.sessions.stats().sent.response, 0);
  pump(fromA, losesBsInitiations);
  t.equal(B.sessions.stats().sent.response, 1, 'from A\'s own address it verifies: B responds');
  // The per-source rate limit works on IPv6 sources: the retry took one token of the burst of 5.
  const limited = B.sessions.stats().drops.rate_limited;
  for (let i = 0; i < 8; i++) B.sessions.handleMessage(retry?.msg as Buffer, IP.A, PORT);
  t.equal(B.sessions.stats().drops.rate_limited - limited, 4, '4 more pass (as replays), then A\'s IPv6 source is rate limited');
});
