// The packet engine's wireguard mode (backends/datapath/native/src/wireguard.c), through its mode hooks,
// against the TypeScript reference of transport messages (backends/wireguard/protocol: TransportKeypair,
// ReplayWindow) on node:crypto: backends/datapath/native/test/wireguard-test.c builds an engine in
// wireguard mode over a wg table laid out from layout.h and calls route / seal / decap / endpoint.
//  - C seals (route + seal, whole or split as the offload TX gathers it), TransportKeypair opens, and a
//    TransportKeypair with the same keys seals the same plaintext at the same counter to the same bytes;
//  - TransportKeypair seals, C decap opens (the inner packet, its TTL decremented, compared);
//  - the same counter sequence through C's replay window and ReplayWindow (wireguard-go replay.go);
//  - the C-only groups: drops by reason with exact counters, handshake records on the pipe, TX without
//    a session, NEXT confirmation, roaming, keepalives, the family-6 engine (flannel-wg-v6), whose
//    handshake record the TypeScript HandshakeRecordParser reads back, and the dual engine (flannel-wg of
//    the single-device modes: both inner families over outer IPv4 or IPv6, allowed IPs per family).
// Built with AddressSanitizer and UBSan. A deviation found and not yet fixed is a C "KNOWN-FAILURE" line,
// asserted here as a todo.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  REJECT_AFTER_MESSAGES, REPLAY_WINDOW_SIZE, ReplayWindow, TransportKeypair, paddedLength,
} from '../../backends/wireguard/protocol/index.js';
import { HandshakeRecordParser } from '../../backends/wireguard/session/handshake-queue.js';
import { ENGINE_LIBS, NATIVE, engineSources } from '../helpers/native-sources.js';

const MTU = 1420; // wireguard-test.c MTU
const KP_CAP = 8; // wireguard-test.c KP_CAP: a local index carries its slot in the low 3 bits

const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-wireguard-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(dir, 'wireguard-test');
execFileSync('cc', ['-O1', '-g', '-Wall', '-fsanitize=address,undefined', '-fno-sanitize-recover=undefined',
  join(NATIVE, 'test', 'wireguard-test.c'), ...engineSources(), ...ENGINE_LIBS, '-o', bin], { stdio: 'pipe' });

function run(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 120_000, input, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Seals at a chosen counter: TransportKeypair counts from 0, so its (TS-private) counter is set first. */
function sealAt(kp: TransportKeypair, counter: bigint, plaintext: Uint8Array): Buffer {
  (kp as unknown as { nextSendCounter: bigint }).nextSendCounter = counter;
  return kp.seal(plaintext, MTU);
}

/** Keys and indices of the C engine's keypair; the peer's TransportKeypair is its mirror image. */
function keysForC(): { send: Buffer; recv: Buffer; local: number; remote: number; args: string[] } {
  const send = randomBytes(32);
  const recv = randomBytes(32);
  const local = ((randomBytes(4).readUInt32LE(0) & ~(KP_CAP - 1)) | 2) >>> 0;
  const remote = randomBytes(4).readUInt32LE(0);
  return { send, recv, local, remote, args: [send.toString('hex'), recv.toString('hex'), String(local), String(remote)] };
}

function ipChecksum(h: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < h.length; i += 2) s += ((h[i] as number) << 8) | (h[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function headerOk(p: Buffer): boolean {
  return ipChecksum(p.subarray(0, 20)) === 0;
}

/** An IPv4 packet of n bytes from the C engine's peer (10.244.2.5) to it (10.244.1.7): UDP from 28 bytes on. */
function innerPacket(n: number, id: number, src = 0x0af40205): Buffer {
  const p = Buffer.alloc(n);
  p[0] = 0x45;
  p.writeUInt16BE(n, 2);
  p.writeUInt16BE(id & 0xffff, 4);
  p[8] = 64;
  p[9] = n >= 28 ? 17 : 253;
  p.writeUInt32BE(src >>> 0, 12);
  p.writeUInt32BE(0x0af40107, 16);
  for (let i = 20; i < n; i++) p[i] = (id * 31 + i) & 0xff;
  if (n >= 28) {
    p.writeUInt16BE(40000, 20);
    p.writeUInt16BE(5201, 22);
    p.writeUInt16BE(n - 20, 24);
    p.writeUInt16BE(0, 26); // no UDP checksum
  }
  p.writeUInt16BE(ipChecksum(p.subarray(0, 20)), 10);
  return p;
}

/** What the engine writes to its device for that packet: TTL − 1, header checksum recomputed. */
function forwarded(p: Buffer): Buffer {
  const q = Buffer.from(p);
  q[8] = (q[8] as number) - 1;
  q.writeUInt16BE(0, 10);
  q.writeUInt16BE(ipChecksum(q.subarray(0, 20)), 10);
  return q;
}

t.test('C seals (route + seal), TransportKeypair opens; the same keys seal the same bytes in TypeScript', async (t) => {
  const k = keysForC();
  const r = run(['seal', ...k.args]);
  t.equal(r.status, 0, `every C check passed${r.stderr ? `:\n${r.stderr}` : ''}`);
  const peer = new TransportKeypair(k.recv, k.send, k.remote, k.local, false);
  const mirror = new TransportKeypair(Buffer.from(k.send), Buffer.from(k.recv), k.local, k.remote, true);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('SEALED '));
  const want: Record<string, [number, number]> = { // name → [inner length, padded length]
    len20: [20, 32], len31: [31, 32], len32: [32, 32], len33: [33, 48], 'mtu-1': [MTU - 1, MTU], mtu: [MTU, MTU], keepalive: [0, 0],
    split33: [33, 48], 'split-mtu-1': [MTU - 1, MTU], 'split-mtu': [MTU, MTU], 'split-odd': [517, 528], 'high-counter': [100, 112], 'last-counter': [64, 64],
  };
  t.same(lines.map((l) => l.split(' ')[1]), Object.keys(want), 'every case sealed, in order');
  const inners = new Map<number, Buffer>();
  for (const line of lines) {
    const [, name = '', ctr = '', len = '', innerHex = '', wireHex = ''] = line.split(' ');
    const counter = BigInt(ctr);
    const n = Number(len);
    const inner = innerHex === '-' ? Buffer.alloc(0) : Buffer.from(innerHex, 'hex');
    const wire = Buffer.from(wireHex, 'hex');
    const [wantLen, wantPadded] = want[name] ?? [-1, -1];
    t.equal(n, wantLen, `${name}: inner length`);
    t.equal(paddedLength(n, MTU), wantPadded, `${name}: the reference pads ${n} to ${wantPadded}`);
    t.equal(wire.length, 32 + wantPadded, `${name}: ${wire.length}-byte datagram (padding never beyond the MTU)`);
    t.equal(wire.readUInt32LE(4), k.remote, `${name}: receiver index is the peer's`);
    if (name === 'high-counter') t.equal(counter, 0x0123456789abcdefn, `${name}: counter`);
    if (name === 'last-counter') t.equal(counter, REJECT_AFTER_MESSAGES - 1n, `${name}: counter`);
    let opened: Buffer | undefined;
    try {
      const o = peer.open(wire);
      t.equal(o.counter, counter, `${name}: counter`);
      opened = o.plaintext;
    } catch (err) {
      t.fail(`${name}: TransportKeypair.open refused C's datagram: ${String(err)}`);
      continue;
    }
    t.equal(opened.length, wantPadded, `${name}: padded plaintext length`);
    t.ok(opened.subarray(0, n).equals(inner), `${name}: plaintext is the inner packet`);
    t.ok(opened.subarray(n).every((b) => b === 0), `${name}: zero padding`);
    if (n >= 20) {
      t.equal(inner[8], 63, `${name}: TTL decremented by route`);
      t.ok(headerOk(inner), `${name}: inner header checksum valid`);
    }
    const seen = inners.get(n);
    if (seen) t.ok(seen.equals(inner), `${name}: same inner as the whole-packet seal of ${n} bytes`);
    else inners.set(n, inner);
    t.ok(sealAt(mirror, counter, inner).equals(wire), `${name}: byte-identical to TransportKeypair.seal at counter ${counter}`);
  }
  t.match(r.stdout, /seal cases done/);
});

t.test('TransportKeypair seals, C decap opens', async (t) => {
  const k = keysForC();
  const sealer = new TransportKeypair(Buffer.from(k.recv), Buffer.from(k.send), k.remote, k.local, true);
  const stranger = new TransportKeypair(Buffer.from(k.recv), Buffer.from(k.send), k.remote, (k.local ^ 0x100) >>> 0, true);
  type Want = { kind: 'OPENED'; inner: Buffer } | { kind: 'KEEPALIVE' } | { kind: 'DROPPED'; reason: string };
  const msgs: { name: string; wire: Buffer; want: Want }[] = [];
  let ctr = 0n;
  const add = (name: string, plaintext: Buffer, want: Want, kp = sealer, counter = ctr++): Buffer => {
    const wire = sealAt(kp, counter, plaintext);
    msgs.push({ name, wire, want });
    return wire;
  };
  for (const n of [20, 31, 32, 33, MTU - 1, MTU, 600]) {
    const p = innerPacket(n, n);
    const wire = add(`inner ${n}`, p, { kind: 'OPENED', inner: forwarded(p) });
    t.equal(wire.length, 32 + paddedLength(n, MTU), `inner ${n}: ${wire.length}-byte datagram`);
  }
  const ka = add('keepalive', Buffer.alloc(0), { kind: 'KEEPALIVE' });
  t.equal(ka.length, 32, 'keepalive: 32 bytes');
  // Negative cases through the same path.
  const genuine = innerPacket(100, 1);
  const g = sealAt(sealer, 50n, genuine);
  const forged = Buffer.from(g);
  forged[40] = (forged[40] as number) ^ 0x10;
  msgs.push({ name: 'forged (ciphertext bit flipped)', wire: forged, want: { kind: 'DROPPED', reason: 'bad_decrypt' } });
  msgs.push({ name: 'genuine of the forged counter', wire: g, want: { kind: 'OPENED', inner: forwarded(genuine) } });
  msgs.push({ name: 'the same again', wire: g, want: { kind: 'DROPPED', reason: 'replay' } });
  ctr = 51n;
  add('inner source of another peer', innerPacket(60, 2, 0x0af40305), { kind: 'DROPPED', reason: 'allowed_ips' });
  add('wrong receiver index', innerPacket(60, 3), { kind: 'DROPPED', reason: 'unknown_index' }, stranger);
  const high = innerPacket(80, 4);
  add('high counter', high, { kind: 'OPENED', inner: forwarded(high) }, sealer, 0xfedcba9876543210n);
  add('older, within the window', innerPacket(80, 5), { kind: 'OPENED', inner: forwarded(innerPacket(80, 5)) }, sealer, 0xfedcba9876543210n - BigInt(REPLAY_WINDOW_SIZE));
  add('older, behind the window', innerPacket(80, 6), { kind: 'DROPPED', reason: 'replay' }, sealer, 0xfedcba9876543210n - BigInt(REPLAY_WINDOW_SIZE) - 1n);
  const last = innerPacket(40, 7);
  add('last counter', last, { kind: 'OPENED', inner: forwarded(last) }, sealer, REJECT_AFTER_MESSAGES - 1n);

  const r = run(['open', ...k.args], msgs.map((m) => m.wire.toString('hex')).join('\n') + '\n');
  t.equal(r.status, 0, `every C check passed${r.stderr ? `:\n${r.stderr}` : ''}`);
  const out = r.stdout.split('\n').filter((l) => /^(OPENED|KEEPALIVE|DROPPED) /.test(l));
  t.equal(out.length, msgs.length, 'one verdict per message');
  msgs.forEach((m, i) => {
    const parts = (out[i] ?? '').split(' ');
    t.equal(parts[1], String(i), `${m.name}: verdict ${i}`);
    if (m.want.kind === 'OPENED') {
      t.equal(parts[0], 'OPENED', `${m.name}: opened`);
      t.equal(Number(parts[2]), m.want.inner.length, `${m.name}: inner length`);
      t.equal(parts[3], m.want.inner.toString('hex'), `${m.name}: the inner packet, TTL decremented`);
    } else if (m.want.kind === 'KEEPALIVE') {
      t.equal(parts[0], 'KEEPALIVE', `${m.name}: a keepalive`);
    } else {
      t.same(parts.slice(0, 1).concat(parts.slice(2)), ['DROPPED', m.want.reason], `${m.name}: dropped as ${m.want.reason}`);
    }
  });
});

t.test('replay window: C and ReplayWindow give the same verdicts (wireguard-go replay.go)', async (t) => {
  const W = BigInt(REPLAY_WINDOW_SIZE);
  t.equal(W, 8128n, 'window 8128');
  // Edges first, then a seeded walk around the highest counter, with jumps past the ring.
  const seq: bigint[] = [0n, 0n, 1n, 5n, 3n, 4n, 5n, 10_000n, 10_000n - W, 10_000n - W - 1n, 10_000n - W, 10_000n - W + 1n,
    12_800n, 12_800n - W, 12_800n - W - 1n, 12_800n + 2n * 8192n + 3n, 12_800n, 12_800n + 2n * 8192n];
  let x = 0x2545f491;
  const rnd = (m: number): number => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return (x >>> 0) % m;
  };
  let hi = 12_800n + 2n * 8192n + 3n;
  for (let i = 0; i < 3000; i++) {
    const r = rnd(100);
    let c: bigint;
    if (r < 30) c = hi + BigInt(1 + rnd(100));
    else if (r < 35) c = hi + BigInt(8192 + rnd(20_000)); // past the whole ring
    else if (r < 45) c = hi - W + BigInt(rnd(3)) - 1n; // the edge: last − 8129, − 8128, − 8127
    else if (r < 55) c = seq[rnd(seq.length)] as bigint; // a duplicate (or an old one)
    else c = hi - BigInt(rnd(8300));
    if (c < 0n) c = 0n;
    if (c > hi) hi = c;
    seq.push(c);
  }
  seq.push(REJECT_AFTER_MESSAGES, (1n << 64n) - 1n, REJECT_AFTER_MESSAGES - 1n, REJECT_AFTER_MESSAGES - 1n, REJECT_AFTER_MESSAGES - 1n - W,
    REJECT_AFTER_MESSAGES - 2n - W);
  const ref = new ReplayWindow();
  const expected = seq.map((c) => {
    const v = ref.accept(c);
    return v === 'ok' ? 'ok' : v === 'exhausted' ? 'expired' : 'replay';
  });
  const r = run(['replay-seq'], seq.map(String).join('\n') + '\n');
  t.equal(r.status, 0, `every C check passed${r.stderr ? `:\n${r.stderr}` : ''}`);
  const got = r.stdout.trim().split('\n');
  t.equal(got.length, seq.length, 'one verdict per counter');
  const first = got.findIndex((v, i) => v !== expected[i]);
  t.equal(first, -1, first < 0 ? 'every verdict as the reference' : `counter #${first} ${seq[first]}: C ${got[first]}, reference ${expected[first]}`);
  // The edge, spelled out: after 10000, 10000 − 8128 is accepted once and 10000 − 8129 refused.
  t.same(got.slice(7, 12), ['ok', 'ok', 'replay', 'replay', 'ok'], 'last − 8128 accepted, last − 8129 refused, the edge once');
  t.same(got.slice(12, 15), ['ok', 'ok', 'replay'], 'the edge when last starts a block (ring slot shared with last − 8129)');
  t.same(got.slice(-6), ['expired', 'expired', 'ok', 'replay', 'ok', 'replay'], 'REJECT_AFTER_MESSAGES refused, the last counter accepted once');
  const oks = expected.filter((v) => v === 'ok').length;
  const replays = expected.filter((v) => v === 'replay').length;
  t.ok(oks > 1000 && replays > 300, `both verdicts well represented: ${oks} accepted, ${replays} refused`);
});

const GROUPS: Record<string, RegExp> = {
  replay: /replay window: in order, reordered, duplicates, edge last-8128 accepted \/ last-8129 refused/,
  drops: /drops: unknown index, bad decrypt \(window kept\), allowed IPs, expired keypair/,
  handshake: /handshake messages: wrong sizes refused, records with length \/ port \/ address LE, full pipe counted/,
  tx: /tx: no session \(none, free slot, other peer, expired\) refused with WANT, old initiator sent with WANT/,
  confirm: /confirm: a responder's NEXT keypair becomes current/,
  roaming: /roaming: endpoint follows authenticated packets only/,
  keepalive: /keepalive: ST_WG_KEEPALIVES_RECEIVED 3, SP_RX_KEEPALIVES 3 on slot 1/,
  v6: /v6: IPv6 sealed to \[PublicIPv6\]:port and opened, allowed IPs, foreign destination, IPv4 inner dropped both ways, roaming to an IPv6 source, 20-byte handshake records/,
  dual: /dual: IPv4 and IPv6 inside one engine over outer IPv4 and outer IPv6, allowed IPs per family, spoofed and foreign dropped, roaming and records of the outer family/,
};

// Deviations found by these tests and not yet fixed in wireguard.c: the C test prints the line when it
// still behaves so (each one's expected and actual values are in it).
const KNOWN: Record<string, string> = {};

for (const [group, summary] of Object.entries(GROUPS)) {
  t.test(`wireguard mode: ${group}`, async (t) => {
    const r = run([group]);
    t.comment(r.stdout.trim());
    t.equal(r.status, 0, `${group}: every check passed${r.stderr ? `:\n${r.stderr}` : ''}`);
    t.match(r.stdout, summary, `${group}: as designed`);
    t.match(r.stdout, /all checks passed/);
    for (const m of r.stdout.matchAll(/^KNOWN-FAILURE ([\w-]+): (.*)$/gm)) {
      const id = m[1] as string;
      t.ok(id in KNOWN, `known failure ${id} is listed`);
      t.fail(`${id}: ${m[2]}`, { todo: KNOWN[id] ?? 'unlisted' });
    }
  });
}

t.test('a family-6 engine\'s handshake record, as C wrote it to the pipe, read by HandshakeRecordParser(family 6)', async (t) => {
  const r = run(['v6']);
  const hex = /^RECORD6 ([0-9a-f]+)$/m.exec(r.stdout)?.[1];
  t.ok(hex, 'the C test printed the record it read from the pipe');
  const rec = Buffer.from(hex ?? '', 'hex');
  const got: Array<{ msg: Buffer; ip: number | bigint; port: number }> = [];
  const parser = new HandshakeRecordParser((msg, ip, port) => got.push({ msg, ip, port }), (err) => t.fail(String(err)), 6);
  parser.push(rec.subarray(0, 7)); // split across chunks, as a pipe may deliver it
  parser.push(Buffer.concat([rec.subarray(7), rec]));
  t.equal(got.length, 2, 'two records');
  t.equal(parser.corruptRecords, 0);
  for (const g of got) {
    t.equal(g.ip, 0x20010db8000000090000000000000042n, 'the source 2001:db8:0:9::42 as a bigint');
    t.equal(g.port, 40001);
    t.equal(g.msg.length, 148);
    t.equal(g.msg[0], 1, 'an initiation');
    t.same([...g.msg.subarray(4, 8)], [44, 55, 66, 77], 'its bytes as sent (i * 11)');
  }
  const v4 = new HandshakeRecordParser(() => t.fail('a family-4 parser must not read a family-6 record as a message of its own format'), () => {}, 4);
  v4.push(rec);
  t.equal(v4.corruptRecords, 1, 'a family-4 parser refuses the 168-byte record (its maximum is 156)');
});
