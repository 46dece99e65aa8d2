// The wireguard backend under attack (issue 16, "Attacks"): two real flanneld nodes with the wireguard
// backend (PSK configured) and a pod each, plus an attacker: node3 on the same underlay, no flanneld, with
// two hand-written leases of its own (10.244.200.0/24 at 192.0.2.3 with the right PSK, 10.244.201.0/24 at
// 192.0.2.23 with a wrong one). The attacker is fixtures/wg-attacker.ts (our protocol core over a UDP
// socket). Each attack is dropped and counted under its exact reason, the daemon stays up and the pods
// keep talking. Which layer counts what (backends/datapath/native/src/wireguard.c, wg_decap and
// to_control_plane; backends/wireguard/session/sessions.ts, handleMessage):
//   data path, flanneld_datapath_dropped_packets_total: bad_wg_message (shorter than 4 bytes, reserved bytes
//     not zero, a type outside 1..4, a type 1/2/3 message of the wrong size, a type 4 message shorter than
//     32), unknown_index, bad_decrypt, replay, allowed_ips;
//   handshake layer (sizes already checked in C, so "malformed" is unreachable from the wire),
//     flanneld_wireguard_handshake_drops_total: bad_mac1, unexpected_cookie_reply, unknown_peer,
//     replayed_initiation, handshake_decrypt (a wrong PSK, seen by us as initiator), bad_mac2 (answered
//     with a cookie reply under load), rate_limited.
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  MacGenerator, TimestampSource, createInitiation, generateKeyPair, handshakePeer, keyFromBase64, keyToBase64, mac, mac1Key,
} from '../../backends/wireguard/protocol/index.js';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, ipIn, runTag, spawnIn, stopProcess, type SpawnedProcess } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { until } from '../helpers/wait.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/wg-attacker.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const METRICS_PORT = 18097;
const WG_PORT = 51820;
const LEASE_A = { subnet: '10.244.200', ip: '192.0.2.3' }; // the attacker, right PSK
const LEASE_B = { subnet: '10.244.201', ip: '192.0.2.23' }; // the attacker, wrong PSK
const FLOOD_MS = 8000;

const DROP = (r: string) => `flanneld_datapath_dropped_packets_total{reason="${r}"}`;
const HS_DROP = (r: string) => `flanneld_wireguard_handshake_drops_total{reason="${r}"}`;
const HS_MSG = (direction: string, type: string) => `flanneld_wireguard_handshake_messages_total{direction="${direction}",type="${type}"}`;
const WG_EVENT = (e: string) => `flanneld_datapath_wireguard_events_total{event="${e}"}`;

type Metrics = Map<string, number>;

/** Every sample of a daemon's /metrics, by `name{labels}`. */
async function scrape(node: NodeHost): Promise<Metrics> {
  const text = await execCheckedIn(node.ns, 'curl', ['-sf', '-m', '10', `http://127.0.0.1:${METRICS_PORT}/metrics`]);
  const m: Metrics = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}

const delta = (after: Metrics, before: Metrics, key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0);

/** The samples that moved between two scrapes (for diagnostics), counters only. */
function moved(after: Metrics, before: Metrics, prefixes: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) if (prefixes.some((p) => k.startsWith(p)) && v !== (before.get(k) ?? 0)) out[k] = v - (before.get(k) ?? 0);
  return out;
}
const DROPS = ['flanneld_datapath_dropped_packets_total', 'flanneld_wireguard_handshake_drops_total'];

interface Udp { src: string; dst: string; sport: number; dport: number; payload: Buffer }

/** UDP datagrams of a pcap file (Ethernet link type). */
function udpOfPcap(pcap: Buffer): Udp[] {
  const out: Udp[] = [];
  if (pcap.length < 24) return out;
  const le = pcap.readUInt32LE(0) === 0xa1b2c3d4 || pcap.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (o: number) => (le ? pcap.readUInt32LE(o) : pcap.readUInt32BE(o));
  for (let off = 24; off + 16 <= pcap.length;) {
    const len = u32(off + 8);
    const frame = pcap.subarray(off + 16, off + 16 + len);
    off += 16 + len;
    if (frame.length < 14 + 20 + 8 || frame.readUInt16BE(12) !== 0x0800) continue;
    const ip = frame.subarray(14);
    if (ip[9] !== 17) continue;
    const udp = ip.subarray(((ip[0] as number) & 0x0f) * 4);
    out.push({
      src: [...ip.subarray(12, 16)].join('.'), dst: [...ip.subarray(16, 20)].join('.'),
      sport: udp.readUInt16BE(0), dport: udp.readUInt16BE(2), payload: Buffer.from(udp.subarray(8, udp.readUInt16BE(4))),
    });
  }
  return out;
}

/** The data-path verdict wg_decap gives a datagram before any key is looked at. */
function cClass(d: Buffer): 'bad_wg_message' | 'control' | 'transport' {
  if (d.length < 4 || d[1] || d[2] || d[3] || (d[0] as number) < 1 || (d[0] as number) > 4) return 'bad_wg_message';
  if (d[0] === 4) return d.length < 32 ? 'bad_wg_message' : 'transport';
  return d.length === [0, 148, 92, 64][d[0] as number] ? 'control' : 'bad_wg_message';
}

const typed = (type: number, size: number, fill: 'zero' | 'random' = 'random') => {
  const b = fill === 'zero' ? Buffer.alloc(size) : randomBytes(size);
  if (size > 0) b[0] = type;
  if (size > 1) b.fill(0, 1, Math.min(4, size));
  return b;
};

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and TUN');
} else {
  t.test('wireguard backend under attack', async (t) => {
    const cluster = await LocalCluster.create({ tag: runTag('wa'), nodes: 3 });
    const processes: SpawnedProcess[] = [];
    t.teardown(async () => {
      for (const p of processes) await stopProcess(p, 'SIGKILL', 1000).catch(() => null);
      await cluster.destroy();
    });
    const [n1, n2, atk] = cluster.nodes as [NodeHost, NodeHost, NodeHost];
    const psk = randomBytes(32);
    const wrongPsk = randomBytes(32);
    const keyA = generateKeyPair();
    const keyB = generateKeyPair();
    await cluster.putConfig({ Network: '10.244.0.0/16', Backend: { Type: 'wireguard', PSK: keyToBase64(psk) } });
    const lease = (ip: string, pub: Buffer) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: 'wireguard', BackendData: { PublicKey: keyToBase64(pub), Port: WG_PORT } });
    await cluster.etcd.put(`/coreos.com/network/subnets/${LEASE_A.subnet}.0-24`, lease(LEASE_A.ip, keyA.publicKey));
    await cluster.etcd.put(`/coreos.com/network/subnets/${LEASE_B.subnet}.0-24`, lease(LEASE_B.ip, keyB.publicKey));
    await ipIn(atk.ns, ['addr', 'add', `${LEASE_B.ip}/24`, 'dev', 'eth0']);

    // The handshakes of the nodes' start, captured on node1's underlay link for the replayed initiation.
    const startPcap = join(cluster.stateDir, 'start.pcap');
    const startCap = spawnIn(n1.ns, 'tcpdump', ['-i', 'eth0', '--immediate-mode', '-U', '-n', '-s', '0', '-w', startPcap,
      `udp port ${WG_PORT} and (udp[8] = 1 or udp[8] = 2)`]);
    processes.push(startCap);
    await until('tcpdump', async () => /listening on/.test(startCap.output()) || startCap.child.exitCode !== null, 10_000);

    for (const node of [n1, n2]) cluster.startDaemon(node, [`--healthz-port=${METRICS_PORT}`, ...(process.env.WA_DEBUG ? ['--log-level=debug'] : [])]);
    if (process.env.WA_DEBUG) t.teardown(() => { for (const n of [n1, n2]) console.error(`=== ${n.name}\n${cluster.daemons.get(n.name)?.proc.output().split('\n').filter((l) => /handshake|keypair|session/.test(l)).join('\n')}`); });
    const pods: PodHost[] = [];
    for (const node of [n1, n2]) pods.push(await cluster.addPod(node, await cluster.waitForSubnet(node)));
    const [p1, p2] = pods as [PodHost, PodHost];
    await until('pods connected', async () => (await cluster.pingMatrix(pods)).flat().every(Boolean), 30_000);
    await sleep(300);
    await stopProcess(startCap, 'SIGINT', 3000);

    const subnetOf = (p: PodHost) => p.ip.split('.').slice(0, 3).join('.');
    const publicKeyOf = async (p: PodHost): Promise<Buffer> => {
      const v = JSON.parse((await cluster.etcd.get(`/coreos.com/network/subnets/${subnetOf(p)}.0-24`)) ?? '{}') as { BackendData?: { PublicKey?: string } };
      return keyFromBase64(v.BackendData?.PublicKey ?? '');
    };
    const pub1 = await publicKeyOf(p1); // what the attacker reads from etcd
    const alive = (node: NodeHost) => cluster.daemons.get(node.name)?.proc.child.exitCode === null;

    interface Line { result?: string; [k: string]: unknown }
    const lines = (p: SpawnedProcess): Line[] => p.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
    const startAttacker = (cfg: Record<string, unknown>): SpawnedProcess => {
      const p = spawnIn(atk.ns, process.execPath, ['--import', TSX, FIXTURE, JSON.stringify(cfg)]);
      processes.push(p);
      return p;
    };
    /** Runs the attacker to its end; its last line, with the output on failure. */
    const attack = async (cfg: Record<string, unknown>): Promise<Line> => {
      const p = startAttacker(cfg);
      const code = await p.exited;
      const last = lines(p).at(-1) ?? {};
      if (code !== 0 || last.result !== 'ok') throw new Error(`attacker ${String(cfg.mode)} failed (${code}): ${p.output().slice(-2000)}`);
      return last;
    };
    // One sender for the forged datagrams, fed batches on its stdin (a start-up of tsx per batch is slow here).
    const sender = spawn('ip', ['netns', 'exec', atk.ns, process.execPath, '--import', TSX, FIXTURE, JSON.stringify({ mode: 'serve', bind: { address: atk.underlayIp, port: 0 } })], { stdio: ['pipe', 'pipe', 'pipe'] });
    t.teardown(() => { sender.stdin.end(); sender.kill('SIGKILL'); });
    let senderOut = '';
    const waiting = new Map<number, (l: Line) => void>();
    sender.stdout.on('data', (d: Buffer) => {
      senderOut += String(d);
      for (let nl = senderOut.indexOf('\n'); nl >= 0; nl = senderOut.indexOf('\n')) {
        const l = JSON.parse(senderOut.slice(0, nl)) as Line;
        senderOut = senderOut.slice(nl + 1);
        if (typeof l.done === 'number') waiting.get(l.done)?.(l);
      }
    });
    let senderErr = '';
    sender.stderr.on('data', (d: Buffer) => { senderErr += String(d); });
    let batches = 0;
    const sendFrom = async (to: NodeHost, datagrams: Buffer[], listenMs = 1000): Promise<Line> => {
      const id = ++batches;
      const datagramsFile = join(cluster.stateDir, `datagrams-${id}.json`);
      writeFileSync(datagramsFile, JSON.stringify(datagrams.map((d) => d.toString('hex'))));
      const done = new Promise<Line>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`sender: batch ${id} not done in 30 s: ${senderErr.slice(-2000)}`)), 30_000);
        waiting.set(id, (l) => { clearTimeout(timer); resolve(l); });
      });
      sender.stdin.write(`${JSON.stringify({ id, to: { address: to.underlayIp, port: WG_PORT }, datagramsFile, listenMs })}\n`);
      return done;
    };
    /** A handshake message with its mac1 made right for `pub` (mac2 left zero). */
    const withMac1 = (msg: Buffer, pub: Buffer) => {
      msg.fill(0, msg.length - 32);
      msg.set(mac(mac1Key(pub), msg.subarray(0, msg.length - 32)), msg.length - 32);
      return msg;
    };
    /** Waits until `key` moved by at least `want` on `node`; returns the scrape. */
    const settle = async (node: NodeHost, before: Metrics, key: string, want: number): Promise<Metrics> => {
      let last: Metrics = before;
      try {
        return await until(`${key} +${want}`, async () => { last = await scrape(node); return delta(last, before, key) >= want && last; }, 10_000);
      } catch {
        return last;
      }
    };

    // From the last ping of case 3 to case 7, node1 and node2 exchange nothing (cases 4-6 talk to node1 only).
    let idle: { at: number; n1: Metrics; n2: Metrics } | undefined;

    await t.test('1. a replayed transport packet, captured on the underlay, is dropped as replay', async (t) => {
      const pcap = join(cluster.stateDir, 'transport.pcap');
      // A data packet from node1 to node2 (a keepalive is 32 bytes, UDP length 40).
      const cap = spawnIn(n2.ns, 'tcpdump', ['-i', 'eth0', '--immediate-mode', '-U', '-n', '-s', '0', '-c', '1', '-w', pcap,
        `udp dst port ${WG_PORT} and src host ${n1.underlayIp} and udp[8] = 4 and udp[4:2] > 60`]);
      processes.push(cap);
      await until('tcpdump', async () => /listening on/.test(cap.output()) || cap.child.exitCode !== null, 10_000);
      t.equal((await execIn(p1.ns, 'ping', ['-n', '-c', '3', '-i', '0.2', '-W', '2', p2.ip])).code, 0, 'pod1 pings pod2');
      await Promise.race([cap.exited, sleep(5000)]);
      await stopProcess(cap, 'SIGINT', 2000);
      const [pkt] = udpOfPcap(readFileSync(pcap));
      t.ok(pkt, 'one transport message from node1 to node2 captured');
      if (!pkt) return;
      t.equal(pkt.payload[0], 4, `type 4, ${pkt.payload.length} bytes`);
      const before = await scrape(n2);
      const r = await sendFrom(n2, [pkt.payload, pkt.payload, pkt.payload]);
      const after = await settle(n2, before, DROP('replay'), 3);
      t.equal(delta(after, before, DROP('replay')), 3, 'three replays from the attacker: replay +3 on node2');
      t.equal(delta(after, before, DROP('bad_decrypt')), 0, 'they authenticate (bad_decrypt +0): the replay window refuses them');
      t.equal(delta(after, before, WG_EVENT('endpoint_updates')), 0, 'node2 did not roam node1 to the attacker\'s address');
      t.same(r.replies, [], 'nothing sent back to the attacker');
      // The same message with one ciphertext bit flipped, and with a fresh counter: authentication fails first.
      const flipped = Buffer.from(pkt.payload);
      flipped[20] = (flipped[20] as number) ^ 1;
      const future = Buffer.from(pkt.payload);
      future.writeBigUInt64LE(future.readBigUInt64LE(8) + 100_000n, 8);
      const b2 = await scrape(n2);
      await sendFrom(n2, [flipped, future], 200);
      const a2 = await settle(n2, b2, DROP('bad_decrypt'), 2);
      t.equal(delta(a2, b2, DROP('bad_decrypt')), 2, 'a flipped bit and a forged counter: bad_decrypt +2');
      t.equal(delta(a2, b2, DROP('replay')), 0, 'replay +0 (the forged counter did not move the window)');
      t.ok(alive(n2), 'node2 up');
      t.equal((await execIn(p1.ns, 'ping', ['-n', '-c', '2', '-i', '0.2', '-W', '2', p2.ip])).code, 0, 'pod1 still pings pod2');
    });

    await t.test('2. a replayed initiation, captured when the nodes started, is dropped as replayed_initiation', async (t) => {
      const wire = udpOfPcap(readFileSync(startPcap));
      const inits = wire.filter((u) => u.payload[0] === 1 && u.payload.length === 148);
      const resps = wire.filter((u) => u.payload[0] === 2 && u.payload.length === 92);
      t.ok(inits.length >= 1, `${inits.length} initiations and ${resps.length} responses captured at start`);
      // One its receiver answered: that node accepted its timestamp, so no replay can be newer.
      const answered = inits.find((i) => resps.some((r) => r.src === i.dst && r.dst === i.src && r.payload.readUInt32LE(8) === i.payload.readUInt32LE(4)));
      t.ok(answered, 'an initiation that was answered');
      if (!answered) return;
      const target = answered.dst === n1.underlayIp ? n1 : n2;
      t.comment(`replaying ${answered.src} → ${answered.dst} (sender index ${answered.payload.readUInt32LE(4)}) to ${target.name} from ${atk.underlayIp}`);
      const before = await scrape(target);
      const r = await sendFrom(target, [answered.payload, answered.payload], 1500);
      const after = await settle(target, before, HS_DROP('replayed_initiation'), 2);
      t.equal(delta(after, before, HS_DROP('replayed_initiation')), 2, 'replayed_initiation +2');
      t.equal(delta(after, before, HS_MSG('received', 'initiation')), 2, 'both reached the handshake layer');
      t.same(r.replies, [], 'no response to the attacker');
      t.same(moved(after, before, DROPS), { [HS_DROP('replayed_initiation')]: 2 }, 'no other drop');
      // The response that answered it, replayed to the initiator: nothing is pending under that index any more.
      const response = resps.find((r) => r.src === answered.dst && r.payload.readUInt32LE(8) === answered.payload.readUInt32LE(4)) as Udp;
      const initiator = target === n1 ? n2 : n1;
      const b2 = await scrape(initiator);
      const r2 = await sendFrom(initiator, [response.payload], 1000);
      const a2 = await settle(initiator, b2, HS_DROP('unexpected_response'), 1);
      t.same(moved(a2, b2, DROPS), { [HS_DROP('unexpected_response')]: 1 }, `the captured response replayed to ${initiator.name}: unexpected_response +1, nothing else`);
      t.same(r2.replies, [], 'no reply');
      t.ok(alive(target) && alive(initiator), 'both nodes up');
    });

    await t.test('3. garbage and truncated messages of every type', async (t) => {
      const cases: Array<{ name: string; d: Buffer[]; dp?: string; hs?: string }> = [
        { name: 'random bytes (400 datagrams of 4-1400 bytes)', d: Array.from({ length: 400 }, () => {
          for (;;) { const b = randomBytes(4 + Math.floor(Math.random() * 1397)); if (cClass(b) === 'bad_wg_message') return b; }
        }), dp: 'bad_wg_message' },
        { name: 'shorter than a type header (0-3 bytes)', d: [Buffer.alloc(0), Buffer.from([1]), Buffer.from([4, 0]), Buffer.from([2, 0, 0])], dp: 'bad_wg_message' },
        { name: 'types 0, 5 and 255', d: [typed(0, 148), typed(5, 64), typed(255, 32)], dp: 'bad_wg_message' },
        { name: 'reserved bytes not zero (a 148-byte initiation, a 64-byte transport)', d: [(() => { const b = typed(1, 148); b[2] = 1; return b; })(), (() => { const b = typed(4, 64); b[3] = 0xff; return b; })()], dp: 'bad_wg_message' },
        { name: 'type 1 of 100, 147 and 149 bytes', d: [typed(1, 100), typed(1, 147), typed(1, 149)], dp: 'bad_wg_message' },
        { name: 'type 2 of 91 and 93 bytes', d: [typed(2, 91), typed(2, 93)], dp: 'bad_wg_message' },
        { name: 'type 3 of 63 and 65 bytes', d: [typed(3, 63), typed(3, 65)], dp: 'bad_wg_message' },
        { name: 'type 4 shorter than 32 bytes (4, 16, 31)', d: [typed(4, 4), typed(4, 16), typed(4, 31)], dp: 'bad_wg_message' },
        { name: 'type 4 of 32 and 96 random bytes (no such receiver index)', d: [typed(4, 32), typed(4, 96)], dp: 'unknown_index' },
        { name: 'type 1 of 148 random bytes (reaches the handshake layer)', d: [typed(1, 148)], hs: 'bad_mac1' },
        { name: 'type 2 of 92 random bytes', d: [typed(2, 92)], hs: 'bad_mac1' },
        { name: 'type 3 of 64 random bytes', d: [typed(3, 64)], hs: 'unexpected_cookie_reply' },
        { name: 'type 1, random but with a valid mac1 (the encrypted static does not open)', d: [withMac1(typed(1, 148), pub1)], hs: 'handshake_decrypt' },
        { name: 'type 1 with a valid mac1 and a low-order (all-zero) ephemeral', d: [withMac1(typed(1, 148, 'zero'), pub1)], hs: 'bad_dh' },
        { name: 'type 2, random but with a valid mac1 (no handshake of ours has that index)', d: [withMac1(typed(2, 92), pub1)], hs: 'unexpected_response' },
      ];
      for (const c of cases) {
        const before = await scrape(n1);
        const r = await sendFrom(n1, c.d, 200);
        const key = c.dp ? DROP(c.dp) : HS_DROP(c.hs as string);
        const after = await settle(n1, before, key, c.d.length);
        t.same(moved(after, before, DROPS), { [key]: c.d.length }, `${c.name}: ${key.replace(/^flanneld_/, '')} +${c.d.length}, nothing else`);
        // (handshakes_queued also counts node2's own handshake messages, so only a lower bound here; that
        // the data-path cases never reached the handshake layer shows in its drops: nothing moved there.)
        if (c.hs) t.ok(delta(after, before, WG_EVENT('handshakes_queued')) >= c.d.length, '  handed to the handshake layer (handshakes_queued)');
        t.same(r.replies, [], '  no reply');
      }
      const m = await scrape(n1);
      // The counters mirror omits zero samples: bad_mac1 shows the family is there, malformed must be absent.
      t.ok((m.get(HS_DROP('bad_mac1')) ?? 0) >= 2 && !m.has(HS_DROP('malformed')), 'handshake drops "malformed" stays 0: the data path checks type, reserved bytes and sizes first');
      t.ok(alive(n1), 'node1 up');
      t.equal((await execIn(p1.ns, 'ping', ['-n', '-c', '2', '-i', '0.2', '-W', '2', p2.ip])).code, 0, 'pod1 still pings pod2');
      idle = { at: Date.now(), n1: await scrape(n1), n2: await scrape(n2) };
    });

    await t.test('4. a valid initiation from a key that holds no lease: unknown_peer, no response', async (t) => {
      const stranger = generateKeyPair();
      const { message } = createInitiation(stranger, handshakePeer(pub1, psk, new MacGenerator(pub1)), { localIndex: 0x4242, timestamp: new TimestampSource().next() });
      const before = await scrape(n1);
      const r = await sendFrom(n1, [message], 2000);
      const after = await settle(n1, before, HS_DROP('unknown_peer'), 1);
      t.same(moved(after, before, DROPS), { [HS_DROP('unknown_peer')]: 1 }, 'unknown_peer +1 (mac1 was valid: bad_mac1 +0), nothing else');
      t.same(r.replies, [], 'no response, no cookie reply');
      t.ok(alive(n1), 'node1 up');
    });

    await t.test('5. a lease holder with a wrong PSK: its responses fail as handshake_decrypt', async (t) => {
      const before = await scrape(n1);
      const responder = startAttacker({ mode: 'respond', bind: { address: LEASE_B.ip, port: WG_PORT }, privateKey: keyToBase64(keyB.privateKey), presharedKey: keyToBase64(wrongPsk), durationMs: 8000 });
      await until('attacker bound', async () => lines(responder).some((l) => l.ready) || responder.child.exitCode !== null, 10_000);
      // Traffic for its subnet makes node1 (re)start a handshake if it is not already retrying.
      const ping = await execIn(p1.ns, 'ping', ['-n', '-c', '2', '-i', '0.5', '-W', '1', `${LEASE_B.subnet}.9`]);
      t.not(ping.code, 0, 'no ping through a peer whose handshake never completes');
      const mid = await settle(n1, before, HS_DROP('handshake_decrypt'), 1);
      t.ok(delta(mid, before, HS_DROP('handshake_decrypt')) >= 1, `handshake_decrypt +${delta(mid, before, HS_DROP('handshake_decrypt'))} while the responder runs`);
      await responder.exited;
      const last = lines(responder).at(-1) ?? {};
      t.equal(last.result, 'ok', 'responder ran');
      const toN1 = (last.responses as Record<string, number> | undefined)?.[n1.underlayIp] ?? 0;
      await sleep(500);
      const after = await scrape(n1);
      t.ok(toN1 >= 1, `${toN1} responses with the wrong PSK sent to node1`);
      t.equal(delta(after, before, HS_DROP('handshake_decrypt')), toN1, 'handshake_decrypt + exactly the responses node1 got');
      t.equal(delta(after, before, HS_DROP('bad_mac1')), 0, 'their mac1 was valid');
      t.equal(after.get(`flanneld_wireguard_peer_last_handshake_seconds{peer="${LEASE_B.subnet}.0/24"}`), 0, 'no handshake ever completed with that peer');
      t.notOk(after.has(`flanneld_wireguard_peer_keypair_age_seconds{peer="${LEASE_B.subnet}.0/24"}`), 'and no keypair');
      t.ok(delta(after, before, DROP('no_session')) >= 1, 'the pings to its subnet counted as no_session');
      t.ok(alive(n1), 'node1 up');
    });

    await t.test('6. cryptokey routing: an inner source outside the sender\'s allowed IPs is dropped, its own delivered', async (t) => {
      const inEchos = async () => {
        const snmp = await execCheckedIn(p1.ns, 'cat', ['/proc/net/snmp']);
        const [names, values] = snmp.split('\n').filter((l) => l.startsWith('Icmp:')) as [string, string];
        return Number(values.split(' ')[names.split(' ').indexOf('InEchos')]);
      };
      const echosBefore = await inEchos();
      const before = await scrape(n1);
      const ourSource = `${LEASE_A.subnet}.5`;
      const badSources = [`${subnetOf(p2)}.5`, '172.16.0.9'];
      const r = await attack({
        mode: 'peer', bind: { address: LEASE_A.ip, port: WG_PORT }, node: { address: n1.underlayIp, port: WG_PORT },
        privateKey: keyToBase64(keyA.privateKey), nodePublicKey: keyToBase64(pub1), presharedKey: keyToBase64(psk),
        ourSource, badSources, pod: p1.ip, replayInitiation: true, timeoutMs: 20_000,
      });
      const after = await settle(n1, before, DROP('allowed_ips'), 2);
      t.equal(delta(after, before, DROP('allowed_ips')), 2, `inner sources ${badSources.join(' and ')} (node2's subnet, outside the Network): allowed_ips +2`);
      t.match(r.reply, { type: 0, src: p1.ip, dst: ourSource, dataOk: true }, `the echo from ${ourSource} (its own subnet) reached pod1, whose reply came back encrypted`);
      t.equal((await inEchos()) - echosBefore, 1, 'pod1 received exactly one echo request');
      t.equal(delta(after, before, HS_DROP('replayed_initiation')), 1, 'its own accepted initiation sent again: replayed_initiation +1');
      t.same(r.replayReplies, [], 'and no response to it');
      t.ok(delta(after, before, WG_EVENT('keypairs_confirmed')) >= 1, 'the responder keypair was confirmed by its first transport message');
      t.same(Object.keys(moved(after, before, DROPS)).sort(), [DROP('allowed_ips'), HS_DROP('replayed_initiation')].sort(), 'no other drop');
      t.ok(alive(n1), 'node1 up');
    });

    await t.test('(timers, not an attack) a ping exchange, then 17 s of silence: no new handshake between node1 and node2', async (t) => {
      if (!idle) { t.fail('case 3 did not finish'); return; }
      const wait = idle.at + 17_000 - Date.now();
      if (wait > 0) await sleep(wait);
      const [a1, a2] = [await scrape(n1), await scrape(n2)];
      const last = (m: Metrics, p: PodHost) => m.get(`flanneld_wireguard_peer_last_handshake_seconds{peer="${subnetOf(p)}.0/24"}`);
      t.comment(`${((Date.now() - idle.at) / 1000).toFixed(1)} s after the ping; node2 received ${delta(a2, idle.n2, WG_EVENT('keepalives_received'))} keepalives`);
      // wireguard-go: the pinging node owes a passive keepalive 10 s after the reply, which stops the other
      // side's 15 s "data sent, nothing received" timer; no handshake. Here both counters are read once per
      // 100 ms tick and a send and a receive in the same tick are handled as receive-then-send, so the
      // keepalive is cancelled and the 15 s timer armed: a new handshake 15 s after every short exchange.
      t.equal(last(a1, p2), last(idle.n1, p2), 'node1: the last handshake with node2 is the one before the silence');
      t.equal(last(a2, p1), last(idle.n2, p1), 'node2: likewise');
    });

    await t.test('7. a handshake flood at the rate one core sends: cookies, rate limit, and the pods keep talking', async (t) => {
      const before = await scrape(n1);
      const keypairAge = `flanneld_wireguard_peer_keypair_age_seconds{peer="${subnetOf(p2)}.0/24"}`;
      t.ok(before.has(keypairAge), `node1 has a session with node2 (keypair ${before.get(keypairAge)?.toFixed(1)} s old)`);
      const flood = startAttacker({ mode: 'flood', bind: { address: atk.underlayIp, port: 0 }, node: { address: n1.underlayIp, port: WG_PORT }, nodePublicKey: keyToBase64(pub1), durationMs: FLOOD_MS, cookies: true });
      await until('flood started', async () => lines(flood).some((l) => l.ready) || flood.child.exitCode !== null, 10_000);
      const pingCount = Math.floor((FLOOD_MS - 1000) / 50);
      const ping = execIn(p1.ns, 'ping', ['-n', '-q', '-c', String(pingCount), '-i', '0.05', '-W', '1', p2.ip]);
      const samples: Array<{ underLoad: number; healthz: number; ms: number }> = [];
      while (flood.child.exitCode === null && samples.length < 20) {
        const t0 = Date.now();
        const h = await execIn(n1.ns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '10', `http://127.0.0.1:${METRICS_PORT}/healthz`]);
        const ms = Date.now() - t0;
        const m = await scrape(n1).catch(() => new Map<string, number>());
        samples.push({ underLoad: m.get('flanneld_wireguard_under_load') ?? -1, healthz: Number(h.stdout), ms });
        await sleep(300);
      }
      const p = await ping;
      await flood.exited;
      const f = lines(flood).at(-1) ?? {};
      t.equal(f.result, 'ok', `the flood: ${String(f.sent)} initiations in ${String(f.seconds)} s (${String(f.pps)}/s), ${String(f.cookieReplies)} cookie replies back, ${String(f.sentWithMac2)} with a valid mac2`);
      t.comment(`samples during the flood: ${JSON.stringify(samples)}`);
      const loss = Number(/(\d+(?:\.\d+)?)% packet loss/.exec(p.stdout)?.[1] ?? 100);
      t.comment(p.stdout.trim().split('\n').slice(-2).join(' | '));
      t.ok(loss <= 5, `pod1 → pod2 during the flood: ${loss}% loss of ${pingCount} pings (bound 5%)`);
      t.ok(samples.some((s) => s.underLoad === 1), `flanneld_wireguard_under_load was 1 during the flood (${samples.filter((s) => s.underLoad === 1).length} of ${samples.length} samples)`);
      t.ok(samples.every((s) => s.healthz === 200), `/healthz answered 200 throughout (slowest ${Math.max(...samples.map((s) => s.ms))} ms)`);
      const after = await scrape(n1);
      const d = (k: string) => delta(after, before, k);
      t.comment(`node1 moved: ${JSON.stringify(moved(after, before, [...DROPS, 'flanneld_wireguard_handshake_messages_total', 'flanneld_datapath_wireguard_events_total']))}`);
      t.ok(d(HS_MSG('sent', 'cookie_reply')) > 0, `cookie replies sent: ${d(HS_MSG('sent', 'cookie_reply'))}`);
      t.ok(Number(f.cookiesValid) > 0, `the attacker decrypted ${String(f.cookiesValid)} of them with its mac1 (valid cookie replies)`);
      t.ok(d(HS_DROP('bad_mac2')) > 0, `bad_mac2: ${d(HS_DROP('bad_mac2'))}`);
      t.ok(d(HS_DROP('rate_limited')) > 0, `rate_limited: ${d(HS_DROP('rate_limited'))} (the initiations with a valid mac2, over 20/s)`);
      t.equal(d(HS_MSG('sent', 'cookie_reply')), d(HS_DROP('bad_mac2')), 'one cookie reply per bad_mac2 drop');
      t.equal(d(DROP('no_session')), 0, 'the session with node2 never went missing (no_session +0)');
      t.ok(alive(n1), 'node1 up');
      await until('under load ends', async () => (await scrape(n1)).get('flanneld_wireguard_under_load') === 0, 10_000);
      t.pass('flanneld_wireguard_under_load back to 0 after the flood');
      t.equal((await execIn(n1.ns, 'curl', ['-sf', '-m', '10', `http://127.0.0.1:${METRICS_PORT}/healthz`])).code, 0, '/healthz after the flood');
      t.equal((await execIn(p1.ns, 'ping', ['-n', '-c', '3', '-i', '0.2', '-W', '2', p2.ip])).code, 0, 'pod1 pings pod2 after the flood');
    });
  });
}
