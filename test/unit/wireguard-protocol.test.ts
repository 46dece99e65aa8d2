// Unit tests of the WireGuard protocol core (backends/wireguard/protocol): our initiator against our
// responder, every rejection with its stable code, cookies, the replay window against a naive model, and
// the construction constants against the values published in cloudflare/boringtun
// (boringtun/src/noise/handshake.rs: INITIAL_CHAIN_KEY and INITIAL_CHAIN_HASH). Interop with a real
// WireGuard implementation is test/netns/wireguard-handshake.test.ts.
import t from 'tap';
import { runCommand } from '../../lib/run-command.js';
import * as wg from '../../backends/wireguard/protocol/index.js';

type Code = wg.WireGuardErrorCode;

function codeOf(fn: () => unknown): Code | 'accepted' | string {
  try {
    fn();
    return 'accepted';
  } catch (err) {
    return wg.isWireGuardError(err) ? err.wgCode : `non-WireGuard error: ${String(err)}`;
  }
}

interface Side {
  keys: wg.KeyPair;
  checker: wg.CookieChecker;
  peer: wg.HandshakePeer; // the other side, as this side knows it
  stamps: wg.TimestampSource;
}

function pair(psk?: Buffer, now: () => number = Date.now): { i: Side; r: Side } {
  const ik = wg.generateKeyPair();
  const rk = wg.generateKeyPair();
  return {
    i: { keys: ik, checker: new wg.CookieChecker(ik.publicKey, now), peer: wg.handshakePeer(rk.publicKey, psk, new wg.MacGenerator(rk.publicKey, now)), stamps: new wg.TimestampSource() },
    r: { keys: rk, checker: new wg.CookieChecker(rk.publicKey, now), peer: wg.handshakePeer(ik.publicKey, psk, new wg.MacGenerator(ik.publicKey, now)), stamps: new wg.TimestampSource() },
  };
}

const lookupFor = (s: Side) => (pub: Buffer) => (pub.equals(s.peer.publicKey) ? s.peer : undefined);

function handshake(i: Side, r: Side, opts: { iIndex?: number; rIndex?: number } = {}) {
  const init = wg.createInitiation(i.keys, i.peer, { localIndex: opts.iIndex ?? 11, timestamp: i.stamps.next() });
  const rstate = wg.consumeInitiation(r.keys, r.checker, init.message, lookupFor(r));
  const resp = wg.createResponse(rstate, { localIndex: opts.rIndex ?? 22 });
  const ikp = wg.consumeResponse(i.keys, i.checker, init.state, resp.message);
  return { init, rstate, resp, ikp, rkp: resp.keypair };
}

const flip = (b: Buffer, at: number): Buffer => {
  const c = Buffer.from(b);
  c[at] = (c[at] as number) ^ 0x01;
  return c;
};

t.test('construction constants equal the published values', async (tt) => {
  tt.equal(wg.INITIAL_CHAINING_KEY.toString('hex'), '60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36', 'C = HASH(CONSTRUCTION)');
  tt.equal(wg.INITIAL_HASH.toString('hex'), '2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3', 'H = HASH(C ‖ IDENTIFIER)');
  tt.equal(wg.REPLAY_WINDOW_SIZE, 8128);
  tt.equal(wg.REJECT_AFTER_MESSAGES, 18446744073709543423n, '2^64 − 2^13 − 1');
});

// KDF vectors published in WireGuard/wireguard-go device/kdf_test.go (key, input → τ1, τ2, τ3).
const KDF_VECTORS = [
  ['746573742d6b6579', '746573742d696e707574', '6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633',
    'df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a', 'fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24'],
  ['776972656775617264', '776972656775617264', '491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8',
    '1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f', '31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160'],
  ['', '', '8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0',
    '58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e', '0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e'],
] as const;

t.test('KDF1/2/3 match wireguard-go\'s published vectors', async (tt) => {
  for (const [key, input, t1, t2, t3] of KDF_VECTORS) {
    const k = Buffer.from(key, 'hex');
    const x = Buffer.from(input, 'hex');
    tt.same(wg.kdf3(k, x).map((b) => b.toString('hex')), [t1, t2, t3], `KDF3(${key || 'empty'})`);
    tt.same(wg.kdf2(k, x).map((b) => b.toString('hex')), [t1, t2], `KDF2(${key || 'empty'})`);
    tt.equal(wg.kdf1(k, x).toString('hex'), t1, `KDF1(${key || 'empty'})`);
  }
});

t.test('keys: raw 32 bytes, base64 as wg prints them, X25519 agreement, low-order points refused', async (tt) => {
  const a = wg.generateKeyPair();
  const b = wg.generateKeyPair();
  tt.equal(a.privateKey.length, 32);
  tt.equal(a.publicKey.length, 32);
  tt.ok(wg.publicKeyOf(a.privateKey).equals(a.publicKey));
  tt.ok(wg.dh(a.privateKey, b.publicKey).equals(wg.dh(b.privateKey, a.publicKey)));
  tt.ok(wg.keyFromBase64(wg.keyToBase64(a.publicKey)).equals(a.publicKey));
  tt.equal(codeOf(() => wg.keyFromBase64('abc')), 'FLN_ERR_WG_BAD_KEY');
  tt.equal(codeOf(() => wg.keyFromBase64(Buffer.alloc(31).toString('base64'))), 'FLN_ERR_WG_BAD_KEY');
  tt.equal(codeOf(() => wg.dh(a.privateKey, Buffer.alloc(32))), 'FLN_ERR_WG_BAD_DH', 'the zero point');
  tt.equal(codeOf(() => wg.dh(a.privateKey, Buffer.alloc(31))), 'FLN_ERR_WG_BAD_KEY');
});

const hasWg = (await runCommand('sh', ['-c', 'command -v wg'])).code === 0;
t.test('keys agree with `wg genkey` / `wg pubkey`', { skip: hasWg ? false : 'wg missing: apt-get install wireguard-tools' }, async (tt) => {
  for (let n = 0; n < 3; n++) {
    const priv = (await runCommand('wg', ['genkey'])).stdout.trim();
    const pub = (await runCommand('wg', ['pubkey'], `${priv}\n`)).stdout.trim();
    tt.equal(wg.keyToBase64(wg.publicKeyOf(wg.keyFromBase64(priv))), pub);
  }
  const ours = wg.generateKeyPair();
  const pub = (await runCommand('wg', ['pubkey'], `${wg.keyToBase64(ours.privateKey)}\n`)).stdout.trim();
  tt.equal(pub, wg.keyToBase64(ours.publicKey), 'wg derives the same public key from our private key');
});

for (const withPsk of [false, true]) {
  t.test(`handshake ${withPsk ? 'with' : 'without'} PSK, then transport data both ways`, async (tt) => {
    const { i, r } = pair(withPsk ? wg.generateKeyPair().privateKey : undefined);
    const { init, rstate, resp, ikp, rkp } = handshake(i, r, { iIndex: 0xdeadbeef, rIndex: 7 });
    tt.equal(init.message.length, 148);
    tt.same([...init.message.subarray(0, 4)], [1, 0, 0, 0]);
    tt.equal(init.message.readUInt32LE(4), 0xdeadbeef, 'sender index little-endian');
    tt.ok(init.message.subarray(132).equals(Buffer.alloc(16)), 'mac2 zero without a cookie');
    tt.equal(resp.message.length, 92);
    tt.same([...resp.message.subarray(0, 4)], [2, 0, 0, 0]);
    tt.equal(resp.message.readUInt32LE(4), 7);
    tt.equal(resp.message.readUInt32LE(8), 0xdeadbeef, 'receiver = initiator sender');
    tt.equal(rstate.remoteIndex, 0xdeadbeef);
    tt.ok(rstate.peer === r.peer, 'responder identified the initiator');
    tt.ok(ikp.sendKey.equals(rkp.receiveKey) && ikp.receiveKey.equals(rkp.sendKey), 'T_send_i = T_recv_r and T_recv_i = T_send_r');
    tt.notOk(ikp.sendKey.equals(ikp.receiveKey));
    tt.equal(ikp.remoteIndex, 7);
    tt.equal(rkp.remoteIndex, 0xdeadbeef);

    for (let n = 0; n < 3; n++) {
      const packet = Buffer.from(`initiator → responder #${n}`);
      const m = ikp.seal(packet);
      tt.equal(m.readUInt32LE(4), 7);
      tt.equal(m.readBigUInt64LE(8), BigInt(n), 'counter little-endian, from 0');
      const o = rkp.open(m);
      tt.ok(o.plaintext.subarray(0, packet.length).equals(packet));
      tt.ok(o.plaintext.subarray(packet.length).equals(Buffer.alloc(o.plaintext.length - packet.length)), 'zero padding');
    }
    const back = Buffer.alloc(1400, 0xab);
    const opened = ikp.open(rkp.seal(back)).plaintext;
    tt.equal(opened.length, 1408, 'padded to 1408');
    tt.ok(opened.subarray(0, 1400).equals(back), 'responder → initiator, 1400 bytes');
    const ka = rkp.seal(Buffer.alloc(0));
    tt.equal(ka.length, 32, 'a keepalive is 32 bytes');
    tt.equal(ikp.open(ka).plaintext.length, 0);
  });
}

t.test('a PSK mismatch fails the response (and only the response)', async (tt) => {
  const { i, r } = pair();
  const rWithPsk = { ...r, peer: wg.handshakePeer(i.keys.publicKey, wg.generateKeyPair().privateKey, new wg.MacGenerator(i.keys.publicKey)) };
  const init = wg.createInitiation(i.keys, i.peer, { localIndex: 1, timestamp: i.stamps.next() });
  const rstate = wg.consumeInitiation(r.keys, r.checker, init.message, lookupFor(rWithPsk));
  const resp = wg.createResponse(rstate, { localIndex: 2 });
  tt.equal(codeOf(() => wg.consumeResponse(i.keys, i.checker, init.state, resp.message)), 'FLN_ERR_WG_HANDSHAKE_DECRYPT');
});

t.test('padding: to 16, never beyond the MTU; keepalives stay empty', async (tt) => {
  tt.same([0, 1, 15, 16, 17, 1400, 1401].map((n) => wg.paddedLength(n)), [0, 16, 16, 16, 32, 1408, 1408]);
  tt.equal(wg.paddedLength(1401, 1404), 1404, 'capped at the MTU');
  tt.equal(wg.paddedLength(1410, 1404), 1410, 'a packet over the MTU is not shrunk');
  const { i, r } = pair();
  const { ikp, rkp } = handshake(i, r);
  tt.same([0, 1, 16, 17, 84].map((n) => ikp.seal(Buffer.alloc(n, 1)).length), [32, 48, 48, 64, 128]);
  for (let n = 0; n < 5; n++) rkp.open(ikp.seal(Buffer.alloc(0)));
});

t.test('message decoding: strict type, reserved bytes and length', async (tt) => {
  const sizes: Record<number, number> = { 1: 148, 2: 92, 3: 64 };
  for (const [type, size] of Object.entries(sizes).map(([a, b]) => [Number(a), b] as const)) {
    const good = Buffer.alloc(size);
    good[0] = type;
    tt.equal(wg.messageType(good), type);
    for (const len of [size - 1, size + 1, 4, 0]) {
      const m = Buffer.alloc(len);
      if (len > 0) m[0] = type;
      tt.equal(codeOf(() => wg.messageType(m)), 'FLN_ERR_WG_BAD_LENGTH', `type ${type}, ${len} bytes`);
    }
    for (const at of [1, 2, 3]) tt.equal(codeOf(() => wg.messageType(flip(good, at))), 'FLN_ERR_WG_BAD_TYPE', `type ${type}, reserved byte ${at}`);
  }
  for (const type of [0, 5, 255]) tt.equal(codeOf(() => wg.messageType(Buffer.from([type, 0, 0, 0, ...Buffer.alloc(60)]))), 'FLN_ERR_WG_BAD_TYPE');
  tt.equal(codeOf(() => wg.messageType(Buffer.from([4, 0, 0, 0, ...Buffer.alloc(27)]))), 'FLN_ERR_WG_BAD_LENGTH', 'transport of 31 bytes');
  tt.equal(wg.messageType(Buffer.from([4, 0, 0, 0, ...Buffer.alloc(28)])), 4, 'transport of 32 bytes');
  const init = Buffer.alloc(148);
  init[0] = 1;
  tt.equal(codeOf(() => wg.decodeResponse(init)), 'FLN_ERR_WG_BAD_TYPE', 'an initiation is not a response');
  const c = wg.encodeCookieReply({ receiver: 0x01020304, nonce: Buffer.alloc(24, 5), encryptedCookie: Buffer.alloc(32, 6) });
  tt.same(wg.decodeCookieReply(c), { receiver: 0x01020304, nonce: Buffer.alloc(24, 5), encryptedCookie: Buffer.alloc(32, 6) });
  tt.equal(codeOf(() => wg.encodeCookieReply({ receiver: 1, nonce: Buffer.alloc(23), encryptedCookie: Buffer.alloc(32) })), 'FLN_ERR_WG_BAD_LENGTH');
});

/** The code each byte of a handshake message gets when flipped, as a compact map of runs. */
function runsOf(codes: string[]): string[] {
  const out: string[] = [];
  let start = 0;
  for (let n = 1; n <= codes.length; n++) {
    if (n === codes.length || codes[n] !== codes[start]) {
      out.push(`${start}-${n - 1}:${codes[start]}`);
      start = n;
    }
  }
  return out;
}

t.test('tampering: every byte of an initiation is rejected', async (tt) => {
  const { i, r } = pair();
  const init = wg.createInitiation(i.keys, i.peer, { localIndex: 5, timestamp: i.stamps.next() });
  const codes = [...init.message.keys()].map((at) => {
    r.peer.lastTimestamp = undefined; // each attempt on its own, not a replay of the previous one
    return codeOf(() => wg.consumeInitiation(r.keys, r.checker, flip(init.message, at), lookupFor(r)));
  });
  tt.same(runsOf(codes.slice(0, 132)), ['0-3:FLN_ERR_WG_BAD_TYPE', '4-131:FLN_ERR_WG_BAD_MAC1'], 'header: bad type; everything up to and including mac1: bad mac1');
  // mac2 is only checked when the responder demands it (under load): tested with the cookie below.
  tt.same(codes.slice(132), Array(16).fill('accepted'), 'mac2 bytes pass consumeInitiation when no cookie is demanded');

  // An attacker can recompute mac1 (it needs only the responder's public key): the AEAD layers hold.
  const forged = [...init.message.keys()].slice(8, 116).map((at) => {
    const m = flip(init.message, at);
    new wg.MacGenerator(r.keys.publicKey).addMacs(m);
    r.peer.lastTimestamp = undefined;
    return codeOf(() => wg.consumeInitiation(r.keys, r.checker, m, lookupFor(r)));
  });
  tt.same([...new Set(forged)].filter((c) => c !== 'FLN_ERR_WG_HANDSHAKE_DECRYPT' && c !== 'FLN_ERR_WG_BAD_DH'), [],
    'ephemeral, static and timestamp bytes with a valid mac1: decryption fails');
  tt.ok(forged.slice(32).every((c) => c === 'FLN_ERR_WG_HANDSHAKE_DECRYPT'), 'static and timestamp: FLN_ERR_WG_HANDSHAKE_DECRYPT');
  r.peer.lastTimestamp = undefined;
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, init.message, lookupFor(r))), 'accepted', 'the untouched message passes');
});

t.test('tampering: every byte of a response is rejected', async (tt) => {
  const { i, r } = pair(wg.generateKeyPair().privateKey);
  const init = wg.createInitiation(i.keys, i.peer, { localIndex: 5, timestamp: i.stamps.next() });
  const resp = wg.createResponse(wg.consumeInitiation(r.keys, r.checker, init.message, lookupFor(r)), { localIndex: 6 });
  const codes = [...resp.message.keys()].map((at) => codeOf(() => wg.consumeResponse(i.keys, i.checker, init.state, flip(resp.message, at))));
  // type 2 → 3 reads as a cookie reply, of the wrong length
  tt.same(runsOf(codes.slice(0, 76)), ['0-0:FLN_ERR_WG_BAD_LENGTH', '1-3:FLN_ERR_WG_BAD_TYPE', '4-75:FLN_ERR_WG_BAD_MAC1']);
  tt.same(codes.slice(76), Array(16).fill('accepted'), 'mac2 bytes: only checked under load');
  const forged = [...resp.message.keys()].slice(8, 60).map((at) => {
    const m = flip(resp.message, at);
    new wg.MacGenerator(i.keys.publicKey).addMacs(m);
    return codeOf(() => wg.consumeResponse(i.keys, i.checker, init.state, m));
  });
  tt.same(runsOf(forged.slice(0, 4)), ['0-3:FLN_ERR_WG_UNKNOWN_INDEX'], 'receiver index with a valid mac1: unknown index');
  tt.same([...new Set(forged.slice(4))].filter((c) => c !== 'FLN_ERR_WG_HANDSHAKE_DECRYPT' && c !== 'FLN_ERR_WG_BAD_DH'), [], 'ephemeral and empty: decryption fails');
  tt.ok(forged.slice(4 + 32).every((c) => c === 'FLN_ERR_WG_HANDSHAKE_DECRYPT'));
  tt.equal(codeOf(() => wg.consumeResponse(i.keys, i.checker, init.state, resp.message)), 'accepted');
});

t.test('tampering: every byte of a transport message is rejected', async (tt) => {
  const { i, r } = pair();
  const { ikp, rkp } = handshake(i, r);
  const m = ikp.seal(Buffer.from('some inner packet, 33 bytes long.'));
  const codes = [...m.keys()].map((at) => codeOf(() => rkp.open(flip(m, at))));
  tt.same(runsOf(codes), ['0-3:FLN_ERR_WG_BAD_TYPE', '4-7:FLN_ERR_WG_UNKNOWN_INDEX', `8-${m.length - 1}:FLN_ERR_WG_TRANSPORT_DECRYPT`]);
  tt.equal(codeOf(() => rkp.open(m.subarray(0, m.length - 1))), 'FLN_ERR_WG_TRANSPORT_DECRYPT', 'a truncated message');
  tt.equal(codeOf(() => rkp.open(m.subarray(0, 31))), 'FLN_ERR_WG_BAD_LENGTH');
  tt.equal(codeOf(() => rkp.open(m)), 'accepted', 'tampered copies did not burn the counter');
});

t.test('a wrong mac1 (initiation meant for another key) is rejected before any DH', async (tt) => {
  const { i, r } = pair();
  const other = wg.generateKeyPair();
  const misaddressed = wg.handshakePeer(r.keys.publicKey, undefined, new wg.MacGenerator(other.publicKey));
  const init = wg.createInitiation(i.keys, misaddressed, { localIndex: 1, timestamp: i.stamps.next() });
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, init.message, lookupFor(r))), 'FLN_ERR_WG_BAD_MAC1');
  tt.equal(codeOf(() => r.checker.verifyMac1(init.message)), 'FLN_ERR_WG_BAD_MAC1');
});

t.test('an initiation from an unknown static key is refused', async (tt) => {
  const { i, r } = pair();
  const init = wg.createInitiation(i.keys, i.peer, { localIndex: 1, timestamp: i.stamps.next() });
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, init.message, () => undefined)), 'FLN_ERR_WG_UNKNOWN_PEER');
});

t.test('initiation replay: the same or an older timestamp is refused, a newer one accepted', async (tt) => {
  const { i, r } = pair();
  const first = wg.createInitiation(i.keys, i.peer, { localIndex: 1, timestamp: i.stamps.next() });
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, first.message, lookupFor(r))), 'accepted');
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, first.message, lookupFor(r))), 'FLN_ERR_WG_REPLAYED_INITIATION', 'the captured initiation again');
  const sameStamp = wg.createInitiation(i.keys, i.peer, { localIndex: 2, timestamp: r.peer.lastTimestamp as Buffer });
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, sameStamp.message, lookupFor(r))), 'FLN_ERR_WG_REPLAYED_INITIATION', 'a fresh ephemeral, same timestamp');
  const older = wg.createInitiation(i.keys, i.peer, { localIndex: 3, timestamp: wg.tai64n(Date.now() - 60_000) });
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, older.message, lookupFor(r))), 'FLN_ERR_WG_REPLAYED_INITIATION', 'an older timestamp');
  const newer = wg.createInitiation(i.keys, i.peer, { localIndex: 4, timestamp: i.stamps.next() });
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, newer.message, lookupFor(r))), 'accepted');
});

t.test('TAI64N: 2^62 + 10 + Unix seconds, whitened nanoseconds, strictly increasing per source', async (tt) => {
  const ts = wg.tai64n(1_700_000_000_123);
  tt.equal(ts.readBigUInt64BE(0), (1n << 62n) + 10n + 1_700_000_000n);
  tt.equal(ts.readUInt32BE(8), 123_000_000 & ~0xffffff);
  let clock = 1_700_000_000_000;
  const src = new wg.TimestampSource(() => clock);
  const seen: Buffer[] = [];
  for (const step of [0, 0, 0, -5000, 1, 2000, 0]) {
    clock += step;
    seen.push(src.next());
  }
  for (let n = 1; n < seen.length; n++) tt.ok(wg.compareTimestamps(seen[n] as Buffer, seen[n - 1] as Buffer) > 0, `stamp ${n} is later`);
});

t.test('transport replay: a repeated counter and one behind the window are refused', async (tt) => {
  const { i, r } = pair();
  const { ikp, rkp } = handshake(i, r);
  const sealAt = (counter: bigint) => wg.encodeTransport(ikp.remoteIndex, counter, wg.aeadSeal(ikp.sendKey, counter, Buffer.alloc(16), new Uint8Array(0)));
  const m0 = ikp.seal(Buffer.alloc(16));
  rkp.open(m0);
  tt.equal(codeOf(() => rkp.open(m0)), 'FLN_ERR_WG_REPLAYED_COUNTER');
  tt.equal(codeOf(() => rkp.open(sealAt(10_000n))), 'accepted', 'a jump ahead');
  tt.equal(codeOf(() => rkp.open(sealAt(10_000n - 8128n))), 'accepted', 'exactly 8128 behind');
  tt.equal(codeOf(() => rkp.open(sealAt(10_000n - 8129n))), 'FLN_ERR_WG_COUNTER_TOO_OLD', '8129 behind');
  tt.equal(codeOf(() => rkp.open(sealAt(9_999n))), 'accepted', 'late but inside');
  tt.equal(codeOf(() => rkp.open(sealAt(9_999n))), 'FLN_ERR_WG_REPLAYED_COUNTER');
  tt.equal(codeOf(() => rkp.open(sealAt(wg.REJECT_AFTER_MESSAGES))), 'FLN_ERR_WG_COUNTER_EXHAUSTED');
  tt.equal(codeOf(() => rkp.open(sealAt(1n))), 'FLN_ERR_WG_COUNTER_TOO_OLD');
});

t.test('replay window equals a naive model over random traffic', async (tt) => {
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 4; round++) {
    const w = new wg.ReplayWindow();
    const seen = new Set<bigint>();
    let highest = -1n;
    let c = 0n;
    let mismatches = 0;
    let accepted = 0;
    for (let n = 0; n < 30_000; n++) {
      const r = rand(100);
      if (r < 50) c += 1n;
      else if (r < 55) c += BigInt(rand(20_000));
      else if (r < 90) c -= BigInt(rand(200));
      else c -= BigInt(rand(9_000));
      if (c < 0n) c = 0n;
      const want = !seen.has(c) && (highest < 0n || c > highest || highest - c <= 8128n);
      const got = w.accept(c) === 'ok';
      if (got !== want) mismatches++;
      if (want) {
        seen.add(c);
        if (c > highest) highest = c;
        accepted++;
      }
    }
    tt.equal(mismatches, 0, `round ${round}: ${accepted} accepted of 30000, same verdicts as the model`);
  }
});

t.test('cookie reply round trip: mac2 then accepted, and bound to the source address', async (tt) => {
  let clock = 1_000_000;
  const now = () => clock;
  const { i, r } = pair(undefined, now);
  const src = { address: '192.0.2.7', port: 51820 };
  const first = wg.createInitiation(i.keys, i.peer, { localIndex: 77, timestamp: i.stamps.next() });
  tt.equal(codeOf(() => r.checker.verifyMac2(first.message, src)), 'FLN_ERR_WG_BAD_MAC2', 'under load, a message without mac2 is refused');
  const reply = r.checker.createCookieReply(first.message, src);
  tt.equal(reply.length, 64);
  tt.same([...reply.subarray(0, 4)], [3, 0, 0, 0]);
  tt.equal(reply.readUInt32LE(4), 77, 'receiver = sender of the triggering message');

  const replyCodes = [...reply.keys()].map((at) => codeOf(() => i.peer.macs.consumeCookieReply(flip(reply, at))));
  // type 3 → 2 reads as a response, of the wrong length
  tt.same(runsOf(replyCodes), ['0-0:FLN_ERR_WG_BAD_LENGTH', '1-3:FLN_ERR_WG_BAD_TYPE', '4-7:FLN_ERR_WG_UNKNOWN_INDEX', '8-63:FLN_ERR_WG_BAD_COOKIE_REPLY'], 'every byte of the reply');
  tt.notOk(i.peer.macs.hasCookie());

  i.peer.macs.consumeCookieReply(reply);
  tt.ok(i.peer.macs.hasCookie());
  const second = wg.createInitiation(i.keys, i.peer, { localIndex: 78, timestamp: i.stamps.next() });
  tt.notOk(second.message.subarray(132).equals(Buffer.alloc(16)), 'mac2 present');
  tt.equal(codeOf(() => r.checker.verifyMac2(second.message, src)), 'accepted');
  tt.equal(codeOf(() => r.checker.verifyMac2(second.message, { ...src, port: 51821 })), 'FLN_ERR_WG_BAD_MAC2', 'another source port');
  tt.equal(codeOf(() => r.checker.verifyMac2(second.message, { ...src, address: '192.0.2.8' })), 'FLN_ERR_WG_BAD_MAC2', 'another source address');
  for (let at = 132; at < 148; at++) tt.equal(codeOf(() => r.checker.verifyMac2(flip(second.message, at), src)), 'FLN_ERR_WG_BAD_MAC2', `mac2 byte ${at}`);
  tt.equal(codeOf(() => wg.consumeInitiation(r.keys, r.checker, second.message, lookupFor(r))), 'accepted', 'and the handshake proceeds');

  tt.equal(codeOf(() => i.peer.macs.consumeCookieReply(reply)), 'FLN_ERR_WG_UNKNOWN_INDEX', 'a reply to an older message (index 77, last sent 78)');
  const stale = Buffer.from(reply);
  stale.writeUInt32LE(78, 4);
  tt.equal(codeOf(() => i.peer.macs.consumeCookieReply(stale)), 'FLN_ERR_WG_BAD_COOKIE_REPLY', 'its AD is the old mac1');

  clock += wg.COOKIE_REFRESH_TIME_MS;
  tt.notOk(i.peer.macs.hasCookie(), 'the cookie expires after 120 s');
  const third = wg.createInitiation(i.keys, i.peer, { localIndex: 79, timestamp: i.stamps.next() });
  tt.ok(third.message.subarray(132).equals(Buffer.alloc(16)), 'mac2 zero again');
  tt.equal(codeOf(() => r.checker.verifyMac2(second.message, src)), 'FLN_ERR_WG_BAD_MAC2', 'the checker rotated its secret after 120 s');

  const resp = wg.createResponse(wg.consumeInitiation(r.keys, r.checker, third.message, lookupFor(r)), { localIndex: 90 });
  const respReply = i.checker.createCookieReply(resp.message, { address: '::ffff:192.0.2.9', port: 40000 });
  r.peer.macs.consumeCookieReply(respReply);
  tt.ok(r.peer.macs.hasCookie(), 'the responder side consumes a cookie reply to its response too');
});

t.test('keys are zeroed on destroy; the counter refuses to wrap', async (tt) => {
  const { i, r } = pair();
  const { ikp } = handshake(i, r);
  ikp.destroy();
  tt.ok(ikp.sendKey.equals(Buffer.alloc(32)) && ikp.receiveKey.equals(Buffer.alloc(32)));
  const w = new wg.ReplayWindow();
  tt.equal(w.accept(wg.REJECT_AFTER_MESSAGES - 1n), 'ok');
  tt.equal(w.accept(wg.REJECT_AFTER_MESSAGES), 'exhausted');
});
