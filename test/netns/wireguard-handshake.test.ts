// Our WireGuard protocol core (backends/wireguard/protocol) against the real thing: Debian's wireguard-go
// in namespace A, our core over a plain UDP socket in namespace B (fixtures/wg-peer.ts), a veth pair
// with 192.0.2.0/24 between them. Both roles, with and without PSK, and a wrong PSK that must fail.
// Each case gets a fresh wireguard-go device and fresh keys; tcpdump on the veth checks the wire.
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../../lib/run-command.js';
import { generateKeyPair, keyToBase64, type KeyPair } from '../../backends/wireguard/protocol/index.js';
import { createNetns, deleteNetns, execIn, ipIn, runTag, spawnIn, stopProcess, type SpawnedProcess } from '../../deploy/local/netns.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/wg-peer.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const A_IP = '192.0.2.1';
const B_IP = '192.0.2.2';
const WG_PORT = 51820;
const A_INNER = '10.244.2.0'; // wireguard-go's TUN address (its lease subnet's network address, /32)
const B_INNER = '10.244.1.2'; // an address in our side's subnet 10.244.1.0/24
const UAPI_DIR = '/var/run/wireguard';
const FLOOD = Number(process.env.WG_TEST_FLOOD ?? 20_000);

const onPath = async (cmd: string): Promise<boolean> => (await runCommand('sh', ['-c', `command -v ${cmd}`])).code === 0;

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and TUN');
} else if (!(await onPath('wireguard-go')) || !(await onPath('wg'))) {
  t.plan(0, 'wireguard-go or wg missing: apt-get install wireguard-go wireguard-tools (deploy/local/install-deps.sh)');
} else {
  const tag = runTag('wg');
  const nsA = `${tag}a`;
  const nsB = `${tag}b`;
  const namespaces: string[] = [];
  const processes: SpawnedProcess[] = [];
  const devices: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'wg-interop-'));
  let caseNo = 0;

  t.teardown(async () => {
    for (const p of processes) await stopProcess(p, 'SIGTERM', 2000);
    await deleteNetns(namespaces);
    for (const dev of devices) rmSync(join(UAPI_DIR, `${dev}.sock`), { force: true });
    rmSync(dir, { recursive: true, force: true });
  });

  await createNetns(nsA, namespaces);
  await createNetns(nsB, namespaces);
  await ipIn(nsA, ['link', 'add', `${tag}va`, 'type', 'veth', 'peer', 'name', `${tag}vb`, 'netns', nsB]);
  await ipIn(nsA, ['addr', 'add', `${A_IP}/24`, 'dev', `${tag}va`]);
  await ipIn(nsB, ['addr', 'add', `${B_IP}/24`, 'dev', `${tag}vb`]);
  await ipIn(nsA, ['link', 'set', `${tag}va`, 'up']);
  await ipIn(nsB, ['link', 'set', `${tag}vb`, 'up']);

  async function waitFor(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  function writeSecret(name: string, key: Buffer): string {
    const path = join(dir, name);
    writeFileSync(path, `${keyToBase64(key)}\n`, { mode: 0o600 });
    return path;
  }

  /** A fresh wireguard-go device in ns A, configured with `wg` the way flannel configures a peer. */
  async function startWireguardGo(n: number, ours: KeyPair, ourPort: number, psk: Buffer | undefined) {
    const dev = `${tag}d${n}`;
    devices.push(dev);
    const theirs = generateKeyPair();
    const proc = spawnIn(nsA, 'wireguard-go', ['-f', dev]);
    processes.push(proc);
    const sock = join(UAPI_DIR, `${dev}.sock`);
    await waitFor(`${sock}`, () => existsSync(sock) || proc.child.exitCode !== null);
    if (proc.child.exitCode !== null) throw new Error(`wireguard-go exited: ${proc.output()}`);
    await ipIn(nsA, ['addr', 'add', `${A_INNER}/32`, 'dev', dev]);
    await ipIn(nsA, ['link', 'set', dev, 'up']);
    await ipIn(nsA, ['route', 'add', '10.244.0.0/16', 'dev', dev]);
    const args = ['set', dev, 'private-key', writeSecret(`${dev}.key`, theirs.privateKey), 'listen-port', String(WG_PORT),
      'peer', keyToBase64(ours.publicKey), 'allowed-ips', '10.244.1.0/24', 'endpoint', `${B_IP}:${ourPort}`];
    if (psk) args.push('preshared-key', writeSecret(`${dev}.psk`, psk));
    const r = await execIn(nsA, 'wg', args);
    if (r.code !== 0) throw new Error(`wg set: ${r.stderr}`);
    return { dev, theirs, proc };
  }

  async function stopDevice(dev: string, proc: SpawnedProcess): Promise<void> {
    await stopProcess(proc, 'SIGTERM', 3000);
    rmSync(join(UAPI_DIR, `${dev}.sock`), { force: true });
  }

  /** tcpdump on ns B's veth end, to a pcap file; immediate mode, or packets still in the ring when it stops are lost. */
  async function capture(n: number): Promise<{ stop: () => Promise<Array<{ sport: number; dport: number; payload: Buffer }>> }> {
    const file = join(dir, `case${n}.pcap`);
    const proc = spawnIn(nsB, 'tcpdump', ['-i', `${tag}vb`, '--immediate-mode', '-U', '-n', '-s', '0', '-w', file, 'udp']);
    processes.push(proc);
    await waitFor('tcpdump', () => /listening on/.test(proc.output()) || proc.child.exitCode !== null);
    if (proc.child.exitCode !== null) throw new Error(`tcpdump exited: ${proc.output()}`);
    return {
      stop: async () => {
        await new Promise((r) => setTimeout(r, 200));
        await stopProcess(proc, 'SIGINT', 3000);
        return udpPayloads(readFileSync(file));
      },
    };
  }

  interface Line { wire?: 'in' | 'out'; type?: number; size?: number; ready?: boolean; result?: string; code?: string; [k: string]: unknown }

  function lines(p: SpawnedProcess): Line[] {
    return p.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
  }

  function runFixture(cfg: Record<string, unknown>): SpawnedProcess {
    const p = spawnIn(nsB, process.execPath, ['--import', TSX, FIXTURE, JSON.stringify(cfg)]);
    processes.push(p);
    return p;
  }

  const wireOf = (ls: Line[]) => ls.filter((l) => l.wire).map((l) => `${l.wire} ${l.type}/${l.size}`);

  /** Every UDP datagram on the veth is a WireGuard message of a valid type and size, on port 51820. */
  function checkCapture(tt: Test, pkts: Array<{ sport: number; dport: number; payload: Buffer }>, secret: Buffer, fixtureWire: string[]): void {
    tt.ok(pkts.length > 0, `${pkts.length} datagrams captured`);
    const bad = pkts.filter(({ sport, dport, payload: p }) => {
      if (sport !== WG_PORT && dport !== WG_PORT) return true;
      if (p.length < 4 || p[1] !== 0 || p[2] !== 0 || p[3] !== 0) return true;
      const want: Record<number, (n: number) => boolean> = { 1: (n) => n === 148, 2: (n) => n === 92, 3: (n) => n === 64, 4: (n) => n >= 32 && n % 16 === 0 };
      return !(want[p[0] as number]?.(p.length) ?? false);
    });
    tt.same(bad.map((b) => `${b.sport}>${b.dport} ${b.payload.subarray(0, 4).toString('hex')}/${b.payload.length}`), [],
      'only WireGuard messages of the right types and sizes on the wire');
    tt.notOk(pkts.some((p) => p.payload.includes(secret)), 'the inner payload never crosses the wire in clear');
    const seen = pkts.map((p) => `${p.sport === WG_PORT ? 'in' : 'out'} ${p.payload[0]}/${p.payload.length}`);
    tt.same([...seen].sort(), [...fixtureWire].sort(), 'the capture holds exactly the datagrams our peer sent and received');
  }

  async function latestHandshake(dev: string): Promise<number> {
    const r = await execIn(nsA, 'wg', ['show', dev, 'latest-handshakes']);
    return Number(r.stdout.trim().split(/\s+/)[1] ?? 0);
  }

  for (const withPsk of [false, true]) {
    const label = withPsk ? 'with PSK' : 'without PSK';

    t.test(`initiator ${label}: our initiation, wireguard-go's response, an echo request out and the reply decrypted`, async (tt) => {
      const n = ++caseNo;
      const ours = generateKeyPair();
      const psk = withPsk ? generateKeyPair().privateKey : undefined;
      const port = 40000 + n;
      const { dev, theirs, proc } = await startWireguardGo(n, ours, port, psk);
      const cap = await capture(n);
      const f = runFixture({
        role: 'initiator', privateKey: keyToBase64(ours.privateKey), peerPublicKey: keyToBase64(theirs.publicKey),
        presharedKey: psk && keyToBase64(psk), bind: { address: B_IP, port }, peer: { address: A_IP, port: WG_PORT },
        ourAddress: B_INNER, theirAddress: A_INNER, echoes: 1, timeoutMs: 10_000,
      });
      const code = await f.exited;
      const pkts = await cap.stop();
      const ls = lines(f);
      tt.equal(code, 0, `fixture succeeded: ${JSON.stringify(ls.at(-1))}`);
      tt.match(ls.at(-1), { result: 'ok', reply: 'echo reply decrypted' });
      tt.same(wireOf(ls).slice(0, 3), ['out 1/148', 'in 2/92', 'out 4/128'], 'initiation 148, response 92, echo request 84 B padded to 96 + 32');
      tt.ok(wireOf(ls).includes('in 4/128'), 'the encrypted echo reply came back (128 bytes)');
      checkCapture(tt, pkts, Buffer.from('flannel-ts wireguard interop'), wireOf(ls));
      tt.ok((await latestHandshake(dev)) > 0, 'wg show: wireguard-go records the handshake');
      await stopDevice(dev, proc);
    });

    t.test(`responder ${label}: wireguard-go initiates on a ping, our response, its echo requests decrypted and answered`, async (tt) => {
      const n = ++caseNo;
      const ours = generateKeyPair();
      const psk = withPsk ? generateKeyPair().privateKey : undefined;
      const port = 40000 + n;
      const { dev, theirs, proc } = await startWireguardGo(n, ours, port, psk);
      const cap = await capture(n);
      const f = runFixture({
        role: 'responder', privateKey: keyToBase64(ours.privateKey), peerPublicKey: keyToBase64(theirs.publicKey),
        presharedKey: psk && keyToBase64(psk), bind: { address: B_IP, port }, peer: { address: A_IP, port: WG_PORT },
        ourAddress: B_INNER, theirAddress: A_INNER, echoes: 3, timeoutMs: 12_000,
      });
      await waitFor('fixture bound', () => lines(f).some((l) => l.ready) || f.child.exitCode !== null);
      const ping = await execIn(nsA, 'ping', ['-n', '-c', '3', '-i', '0.3', '-w', '10', '-p', 'f1a22e1f', B_INNER]);
      const code = await f.exited;
      const pkts = await cap.stop();
      const ls = lines(f);
      tt.equal(code, 0, `fixture succeeded: ${JSON.stringify(ls.at(-1))}`);
      tt.match(ls.at(-1), { result: 'ok', answered: 3 });
      tt.same(wireOf(ls).slice(0, 3), ['in 1/148', 'out 2/92', 'in 4/128'], 'initiation 148, response 92, the first echo request 128');
      tt.ok(ls.some((l) => (l.echo as { type?: number; src?: string } | undefined)?.type === 8), 'an ICMP echo request from the ns A kernel decrypted');
      tt.equal(ping.code, 0, `ping in ns A got 3 replies through wireguard-go: ${ping.stdout.split('\n').slice(-3).join(' ')}`);
      checkCapture(tt, pkts, Buffer.from('f1a22e1ff1a22e1ff1a22e1f', 'hex'), wireOf(ls));
      tt.ok((await latestHandshake(dev)) > 0, 'wg show: wireguard-go records the handshake');
      await stopDevice(dev, proc);
    });
  }

  t.test('cookies, we are under load: wireguard-go takes our cookie reply and its retry carries a valid mac2', async (tt) => {
    const n = ++caseNo;
    const ours = generateKeyPair();
    const port = 40000 + n;
    const { dev, theirs, proc } = await startWireguardGo(n, ours, port, undefined);
    const f = runFixture({
      role: 'responder', demandCookie: true, privateKey: keyToBase64(ours.privateKey), peerPublicKey: keyToBase64(theirs.publicKey),
      bind: { address: B_IP, port }, peer: { address: A_IP, port: WG_PORT }, ourAddress: B_INNER, theirAddress: A_INNER, echoes: 3, timeoutMs: 20_000,
    });
    await waitFor('fixture bound', () => lines(f).some((l) => l.ready) || f.child.exitCode !== null);
    const ping = await execIn(nsA, 'ping', ['-n', '-c', '3', '-i', '0.3', '-w', '18', B_INNER]);
    const code = await f.exited;
    const ls = lines(f);
    tt.equal(code, 0, `fixture succeeded: ${JSON.stringify(ls.at(-1))}`);
    tt.same(wireOf(ls).slice(0, 5), ['in 1/148', 'out 3/64', 'in 1/148', 'out 2/92', 'in 4/128'],
      'initiation, our cookie reply (64), wireguard-go\'s retry, our response, data');
    tt.ok(ls.some((l) => l.mac2 === 'valid'), 'the retry carried a mac2 made with our cookie');
    tt.equal(ping.code, 0, `ping in ns A: ${ping.stdout.split('\n').slice(-3).join(' ')}`);
    await stopDevice(dev, proc);
  });

  t.test('cookies, wireguard-go under load: a flood makes it answer with a cookie reply, which we consume; our mac2 retry completes', async (tt) => {
    const n = ++caseNo;
    const ours = generateKeyPair();
    const port = 40000 + n;
    const { dev, theirs, proc } = await startWireguardGo(n, ours, port, undefined);
    const f = runFixture({
      role: 'initiator', flood: FLOOD, privateKey: keyToBase64(ours.privateKey), peerPublicKey: keyToBase64(theirs.publicKey),
      bind: { address: B_IP, port }, peer: { address: A_IP, port: WG_PORT }, ourAddress: B_INNER, theirAddress: A_INNER, echoes: 1, timeoutMs: 20_000,
    });
    const code = await f.exited;
    const ls = lines(f);
    const last = ls.at(-1) ?? {};
    tt.equal(code, 0, `fixture succeeded: ${JSON.stringify(last)}`);
    tt.ok(Number(last.floodCookieReplies) > 0, `wireguard-go went under load: ${String(last.floodCookieReplies)} cookie replies to the ${FLOOD} flood initiations`);
    tt.ok(Number(last.cookies) >= 1, 'a cookie reply to our own initiation was consumed');
    tt.ok(wireOf(ls).includes('in 3/64'), 'a 64-byte cookie reply on the wire');
    const inits = ls.filter((l) => l.initiation !== undefined);
    const cookieFor = new Set(ls.filter((l) => l.cookie === 'consumed').map((l) => l.receiver));
    const corrupted = inits.find((l) => l.mac2 === 'corrupted');
    const honest = inits.find((l) => l.mac2 === true);
    tt.ok(corrupted && honest && inits.indexOf(honest) === inits.indexOf(corrupted) + 1, 'the honest retry with our mac2 came right after');
    tt.notOk(cookieFor.has(honest?.initiation), 'no cookie reply for it: wireguard-go, still under load, accepted our mac2');
    tt.equal(ls.find((l) => l.handshake === 'complete')?.localIndex, honest?.initiation, 'the response answers that very initiation');
    tt.match(last, { result: 'ok', reply: 'echo reply decrypted' }, 'and the tunnel works');
    await stopDevice(dev, proc);
  });

  t.test('wrong PSK, we initiate: the response does not authenticate (FLN_ERR_WG_HANDSHAKE_DECRYPT)', async (tt) => {
    const n = ++caseNo;
    const ours = generateKeyPair();
    const port = 40000 + n;
    const { dev, theirs, proc } = await startWireguardGo(n, ours, port, generateKeyPair().privateKey);
    const f = runFixture({
      role: 'initiator', privateKey: keyToBase64(ours.privateKey), peerPublicKey: keyToBase64(theirs.publicKey),
      presharedKey: keyToBase64(generateKeyPair().privateKey), bind: { address: B_IP, port }, peer: { address: A_IP, port: WG_PORT },
      ourAddress: B_INNER, theirAddress: A_INNER, echoes: 1, timeoutMs: 8_000,
    });
    const code = await f.exited;
    const ls = lines(f);
    tt.equal(code, 1, 'fixture failed');
    tt.match(ls.at(-1), { result: 'fail', code: 'FLN_ERR_WG_HANDSHAKE_DECRYPT' });
    tt.same(wireOf(ls), ['out 1/148', 'in 2/92'], 'wireguard-go answered the initiation (it cannot see the PSK yet); nothing else was sent');
    await stopDevice(dev, proc);
  });

  t.test('wrong PSK, wireguard-go initiates: it rejects our response, sends no data, the ping fails', async (tt) => {
    const n = ++caseNo;
    const ours = generateKeyPair();
    const port = 40000 + n;
    const { dev, theirs, proc } = await startWireguardGo(n, ours, port, generateKeyPair().privateKey);
    const f = runFixture({
      role: 'responder', privateKey: keyToBase64(ours.privateKey), peerPublicKey: keyToBase64(theirs.publicKey),
      presharedKey: keyToBase64(generateKeyPair().privateKey), bind: { address: B_IP, port }, peer: { address: A_IP, port: WG_PORT },
      ourAddress: B_INNER, theirAddress: A_INNER, echoes: 1, timeoutMs: 7_000,
    });
    await waitFor('fixture bound', () => lines(f).some((l) => l.ready) || f.child.exitCode !== null);
    const ping = await execIn(nsA, 'ping', ['-n', '-c', '1', '-w', '6', B_INNER]);
    const code = await f.exited;
    const ls = lines(f);
    tt.equal(code, 1, 'fixture failed');
    tt.match(ls.at(-1), { result: 'fail', code: 'TIMEOUT' });
    tt.ok(wireOf(ls).includes('in 1/148') && wireOf(ls).includes('out 2/92'), 'initiation received and answered');
    tt.notOk(wireOf(ls).some((w) => w.startsWith('in 4/')), 'no transport message from wireguard-go');
    tt.not(ping.code, 0, 'the ping from ns A got no reply');
    tt.equal(await latestHandshake(dev), 0, 'wg show: no handshake completed');
    await stopDevice(dev, proc);
  });
}

/** UDP payloads of an Ethernet pcap (tcpdump -w), IPv4 only. */
function udpPayloads(pcap: Buffer): Array<{ sport: number; dport: number; payload: Buffer }> {
  const out: Array<{ sport: number; dport: number; payload: Buffer }> = [];
  const le = pcap.readUInt32LE(0) === 0xa1b2c3d4 || pcap.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (o: number) => (le ? pcap.readUInt32LE(o) : pcap.readUInt32BE(o));
  for (let off = 24; off + 16 <= pcap.length;) {
    const len = u32(off + 8);
    const frame = pcap.subarray(off + 16, off + 16 + len);
    off += 16 + len;
    if (frame.length < 14 + 20 + 8 || frame.readUInt16BE(12) !== 0x0800) continue;
    const ip = frame.subarray(14);
    const ihl = ((ip[0] as number) & 0x0f) * 4;
    if (ip[9] !== 17) continue;
    const udp = ip.subarray(ihl);
    out.push({ sport: udp.readUInt16BE(0), dport: udp.readUInt16BE(2), payload: Buffer.from(udp.subarray(8, udp.readUInt16BE(4))) });
  }
  return out;
}
