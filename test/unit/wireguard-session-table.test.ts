// Unit tests of the session layer's building blocks: the WgTable against the byte layout C reads
// (offsets taken from backends/datapath/layout.ts, not from WgTable), the handshake pipe reader on a
// real FIFO, the load detector and the per-source rate limiter.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { WG_HEADER, WG_KEYPAIR, WG_KEYPAIR_FLAGS, WG_PEER, wgKeypairsOffset, wgTableBytes } from '../../backends/datapath/layout.js';
import { isWireGuardError } from '../../backends/wireguard/protocol/index.js';
import { encodeHandshakeRecord, HandshakeQueue, HandshakeRecordParser } from '../../backends/wireguard/session/handshake-queue.js';
import { LoadDetector } from '../../backends/wireguard/session/load-detector.js';
import { SourceRateLimiter } from '../../backends/wireguard/session/rate-limiter.js';
import { WIREGUARD_TIMERS } from '../../backends/wireguard/session/session-timers.js';
import { WgTable, wgSubnetFold6 } from '../../backends/wireguard/session/wg-table.js';

const key = (b: number) => Buffer.alloc(32, b);

/** Raw views, as C sees the buffer. */
function raw(table: WgTable, peers: number) {
  const u32 = new Uint32Array(table.buffer);
  const u64 = new BigUint64Array(table.buffer);
  const u8 = new Uint8Array(table.buffer);
  const kp = (slot: number) => wgKeypairsOffset(peers) + slot * WG_KEYPAIR.BYTES;
  const peer = (slot: number) => WG_HEADER.BYTES + slot * WG_PEER.BYTES;
  return { u32, u64, u8, kp, peer };
}

t.test('WgTable: header, index allocation, publication, retirement with quarantine', async (t) => {
  let now = 5_000_000;
  const table = new WgTable(4, 3, WIREGUARD_TIMERS, () => now);
  const r = raw(table, 3);
  t.equal(table.buffer.byteLength, wgTableBytes(4, 3));
  t.equal(table.buffer.byteLength, 64 + 192 + 4 * 1152, '3 peers × 64 bytes (the IPv6 endpoint needs 40) rounded up to 192');
  t.equal(r.u32[WG_HEADER.KP_CAPACITY / 4], 4);
  t.equal(r.u32[WG_HEADER.PEER_CAPACITY / 4], 3);
  t.equal(r.u64[WG_HEADER.REJECT_AFTER_US / 8], 180_000_000n);
  t.equal(r.u64[WG_HEADER.REKEY_AFTER_US / 8], 120_000_000n);

  const indices = [table.allocateIndex(), table.allocateIndex(), table.allocateIndex(), table.allocateIndex()];
  t.same(indices.map((i) => i & 3).sort(), [0, 1, 2, 3], 'one index per slot, the slot in the low bits');
  t.ok(indices.some((i) => i >>> 2 !== 0), 'upper bits are random, not all zero');
  let err: unknown;
  try { table.allocateIndex(); } catch (e) { err = e; }
  t.ok(isWireGuardError(err, 'FLN_ERR_WG_TABLE_FULL'), 'full table throws FLN_ERR_WG_TABLE_FULL');

  const idx = indices[1] as number;
  const slot = idx & 3;
  table.install(idx, { peerSlot: 2, peerSubnet: 0x0af40200, remoteIndex: 0xdeadbeef, sendKey: key(0x11), recvKey: key(0x22), initiator: true, next: false });
  const b = r.kp(slot);
  t.equal(r.u32[(b + WG_KEYPAIR.STATE) / 4], 1, 'STATE 1 once published');
  t.equal(r.u32[(b + WG_KEYPAIR.LOCAL_INDEX) / 4], idx);
  t.equal(r.u32[(b + WG_KEYPAIR.REMOTE_INDEX) / 4], 0xdeadbeef);
  t.equal(r.u32[(b + WG_KEYPAIR.PEER_SLOT) / 4], 2);
  t.equal(r.u32[(b + WG_KEYPAIR.PEER_SUBNET) / 4], 0x0af40200);
  t.equal(r.u32[(b + WG_KEYPAIR.FLAGS) / 4], WG_KEYPAIR_FLAGS.INITIATOR);
  t.equal(r.u64[(b + WG_KEYPAIR.CREATED_US) / 8], 5_000_000_000n, 'CREATED_US = the clock in µs');
  t.same(Buffer.from(r.u8.subarray(b + WG_KEYPAIR.SEND_KEY, b + WG_KEYPAIR.SEND_KEY + 32)), key(0x11));
  t.same(Buffer.from(r.u8.subarray(b + WG_KEYPAIR.RECV_KEY, b + WG_KEYPAIR.RECV_KEY + 32)), key(0x22));

  t.equal(table.nextSendCounter(idx), 0n);
  t.equal(table.nextSendCounter(idx), 1n);
  t.equal(r.u64[(b + WG_KEYPAIR.SEND_COUNTER) / 8], 2n, 'SEND_COUNTER advanced in the SAB');
  now += 1500;
  t.equal(table.ageMs(idx), 1500);

  table.setCurrent(2, idx);
  t.equal(r.u32[(r.peer(2) + WG_PEER.CURRENT) / 4], slot + 1, 'WGP_CURRENT = slot + 1');
  t.equal(table.current(2), idx);

  // C's side effects: replay state, a WANT flag, a roamed endpoint.
  r.u64[(b + WG_KEYPAIR.REPLAY_LAST) / 8] = 77n;
  r.u64[(b + WG_KEYPAIR.REPLAY_BITS) / 8 + 5] = 0xffn;
  Atomics.or(r.u32, (r.peer(2) + WG_PEER.FLAGS) / 4, 1);
  t.same(table.takeFlags(2), { wantHandshake: true, raw: 1 });
  t.same(table.takeFlags(2), { wantHandshake: false, raw: 0 }, 'flags cleared by take');
  r.u64[(r.peer(2) + WG_PEER.ENDPOINT) / 8] = (0x0a000005n << 16n) | 40000n;
  t.same(table.endpoint(2), { ip: 0x0a000005, port: 40000 });
  table.resetEndpoint(2);
  t.equal(table.endpoint(2), undefined);

  table.retire(idx);
  t.equal(r.u32[(b + WG_KEYPAIR.STATE) / 4], 0, 'STATE 0 after retire');
  t.ok(r.u8.subarray(b + WG_KEYPAIR.SEND_KEY, b + WG_KEYPAIR.RECV_KEY + 32).every((x) => x === 0), 'keys zeroed');
  t.equal(r.u64[(b + WG_KEYPAIR.REPLAY_LAST) / 8], 0n, 'replay state zeroed');
  t.equal(r.u32[(r.peer(2) + WG_PEER.CURRENT) / 4], 0, 'CURRENT that named it cleared');

  err = undefined;
  try { table.allocateIndex(); } catch (e) { err = e; }
  t.ok(isWireGuardError(err, 'FLN_ERR_WG_TABLE_FULL'), 'a retired slot stays quarantined');
  now += 9_999;
  t.throws(() => table.allocateIndex(), 'still quarantined after 9.999 s');
  now += 1;
  const again = table.allocateIndex();
  t.equal(again & 3, slot, 'the slot is reused after 10 s');
  t.not(again, idx, 'with a new index');

  // An index reserved but never installed goes back at once.
  table.releaseIndex(indices[2] as number);
  t.equal(table.allocateIndex() & 3, (indices[2] as number) & 3);

  t.throws(() => table.install(0x12345678 & ~3, { peerSlot: 0, peerSubnet: 0, remoteIndex: 1, sendKey: key(1), recvKey: key(2), initiator: false, next: true }),
    { code: 'FLN_ERR_WG_BAD_TABLE_INDEX' }, 'installing an index that was not reserved');
  t.throws(() => new WgTable(6, 1), RangeError, 'capacity must be a power of two');
});

t.test('handshake pipe: records split across writes of a real FIFO', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wg-pipe-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'hs');
  execFileSync('mkfifo', [fifo]);
  const rfd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const wfd = openSync(fifo, constants.O_WRONLY);
  const got: Array<{ msg: string; ip: number; port: number }> = [];
  let wake: (() => void) | undefined;
  const q = new HandshakeQueue(rfd, (msg, ip, port) => { got.push({ msg: msg.toString('hex'), ip, port }); wake?.(); });
  t.teardown(() => q.close());

  const m1 = Buffer.alloc(148, 0xa1); m1[0] = 1; m1.fill(0, 1, 4);
  const m2 = Buffer.alloc(92, 0xb2); m2[0] = 2; m2.fill(0, 1, 4);
  const m3 = Buffer.alloc(64, 0xc3); m3[0] = 3; m3.fill(0, 1, 4);
  const r1 = encodeHandshakeRecord(m1, 0x0a000001, 51820);
  const r2 = encodeHandshakeRecord(m2, 0xc0a80102, 40001);
  const r3 = encodeHandshakeRecord(m3, 0xffffffff, 65535);
  const stream = Buffer.concat([r1, r2, r3, r1]);
  // Cut points: inside r2's header, inside r2's body, inside the last record's header.
  const cuts = [r1.length + 3, r1.length + 50, r1.length + r2.length + r3.length + 5, stream.length];
  const waitFor = (n: number) => new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${n} records, have ${got.length}`)), 3000);
    const check = () => { if (got.length >= n) { clearTimeout(timer); wake = undefined; resolve(); } };
    wake = check;
    check();
  });
  let at = 0;
  const expectAfter = [1, 1, 3, 4];
  for (const [i, cut] of cuts.entries()) {
    writeSync(wfd, stream.subarray(at, cut));
    at = cut;
    await waitFor(expectAfter[i] as number);
    await new Promise((r) => setTimeout(r, 20));
    t.equal(got.length, expectAfter[i], `after write ${i + 1}: ${expectAfter[i]} records`);
  }
  closeSync(wfd);
  t.same(got, [
    { msg: m1.toString('hex'), ip: 0x0a000001, port: 51820 },
    { msg: m2.toString('hex'), ip: 0xc0a80102, port: 40001 },
    { msg: m3.toString('hex'), ip: 0xffffffff, port: 65535 },
    { msg: m1.toString('hex'), ip: 0x0a000001, port: 51820 },
  ]);
  t.equal(q.records, 4);
  t.equal(q.corruptRecords, 0);
});

t.test('handshake record parser: several records in one chunk, byte-by-byte, a corrupt length', async (t) => {
  const seen: number[] = [];
  const p = new HandshakeRecordParser((msg, _ip, port) => seen.push(msg.length * 100000 + port));
  const a = encodeHandshakeRecord(Buffer.alloc(64, 3), 1, 7);
  const b = encodeHandshakeRecord(Buffer.alloc(92, 2), 2, 8);
  p.push(Buffer.concat([a, b, a]));
  t.same(seen, [6400007, 9200008, 6400007]);
  for (const byte of b) p.push(Buffer.from([byte]));
  t.same(seen.slice(3), [9200008], 'reassembled from single bytes');
  const errors: unknown[] = [];
  const q = new HandshakeRecordParser(() => seen.push(-1), (e) => errors.push(e));
  q.push(Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 9, 9]));
  t.equal(q.corruptRecords, 1, 'a length below the header is corrupt');
  t.equal(errors.length, 1);
  t.notOk(seen.includes(-1), 'nothing handed on');
  // A throwing handler does not stop the stream.
  let n = 0;
  const h = new HandshakeRecordParser(() => { n++; throw new Error('boom'); }, () => {});
  h.push(Buffer.concat([a, a]));
  t.equal(n, 2);
});

t.test('load detector: more than N messages within 1 s, then 1 s of hold', async (t) => {
  const d = new LoadDetector(3);
  t.equal(d.record(0), false);
  t.equal(d.record(100), false);
  t.equal(d.record(200), false);
  t.equal(d.record(300), true, 'the 4th message within a second: under load');
  t.equal(d.underLoad(1299), true, 'held for 1 s');
  t.equal(d.underLoad(1300), false);
  t.equal(d.record(5000), false, 'a single message later: not under load');
  const always = new LoadDetector(0);
  t.equal(always.record(10), true, 'threshold 0: every message means load');
});

t.test('source rate limiter: burst 5, then 20 per second', async (t) => {
  const l = new SourceRateLimiter();
  const at0 = Array.from({ length: 7 }, () => l.allow(0x0a000001, 1000));
  t.same(at0, [true, true, true, true, true, false, false]);
  t.equal(l.allow(0x0a000002, 1000), true, 'another source has its own bucket');
  t.equal(l.allow(0x0a000001, 1049), false, '49 ms: less than one token');
  t.equal(l.allow(0x0a000001, 1050), true, '50 ms: one token (20/s)');
  t.equal(l.allow(0x0a000001, 1050), false);
});

t.test('WgTable of family 6: IPv6 endpoints in WGP_EP6_* under the seqlock, as C reads and writes them', async (t) => {
  const table = new WgTable(4, 3, WIREGUARD_TIMERS, () => 0, 6);
  const u8 = new Uint8Array(table.buffer);
  const u32 = new Uint32Array(table.buffer);
  const at = (slot: number, field: number) => WG_HEADER.BYTES + slot * WG_PEER.BYTES + field;
  t.equal(table.endpoint(2), undefined, 'none at first: the lease\'s applies');
  const ip = 0x20010db8000000090000000000000042n;
  table.setEndpoint(2, ip, 7000);
  t.same(table.endpoint(2), { ip, port: 7000 }, 'read back');
  t.same([...u8.subarray(at(2, WG_PEER.EP6_ADDR), at(2, WG_PEER.EP6_ADDR) + 16)], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0x42], 'the address in network order, as struct in6_addr');
  t.equal(u32[at(2, WG_PEER.EP6_PORT) / 4], 7000);
  t.equal(u32[at(2, WG_PEER.EP6_SEQ) / 4], 2, 'the seqlock went odd and back to even once');
  t.equal(u32[at(2, WG_PEER.ENDPOINT) / 4], 0, 'the IPv4 WGP_ENDPOINT untouched');
  t.same(table.endpoint(1), undefined, 'other peers untouched');
  // As C writes it (wireguard.c ep6_write): another address and port, seq 2 → 3 → 4.
  u32[at(2, WG_PEER.EP6_SEQ) / 4] = 3;
  u8.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], at(2, WG_PEER.EP6_ADDR));
  u32[at(2, WG_PEER.EP6_PORT) / 4] = 51821;
  u32[at(2, WG_PEER.EP6_SEQ) / 4] = 4;
  t.same(table.endpoint(2), { ip: 0x20010db8000000000000000000000002n, port: 51821 }, 'a C write read back');
  table.resetEndpoint(2);
  t.equal(table.endpoint(2), undefined, 'reset to the lease\'s');
  t.equal(u32[at(2, WG_PEER.EP6_SEQ) / 4], 6);
  // A writer that never lets go (seq left odd): readers fall back to the lease's endpoint, writers give up.
  table.setEndpoint(1, ip, 9);
  u32[at(1, WG_PEER.EP6_SEQ) / 4] = 7;
  t.equal(table.endpoint(1), undefined, 'a stuck seqlock reads as no roamed endpoint');
  table.setEndpoint(1, ip, 10);
  t.equal(u32[at(1, WG_PEER.EP6_PORT) / 4], 9, 'and is not written through');
  t.throws(() => table.setEndpoint(2, 0x0a000001, 1), TypeError, 'an IPv4 endpoint is refused by a family-6 table');
  t.throws(() => new WgTable(4, 3).setEndpoint(0, ip, 1), TypeError, 'and an IPv6 one by a family-4 table');
  t.equal(wgSubnetFold6(0xfd000010024400020000000000000000n), (0xfd000010 ^ 0x02440002) >>> 0, 'the subnet fold C checks (WGK_PEER_SUBNET)');
});
