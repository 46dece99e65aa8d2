// Security hardening (reliability.md §3), end to end with real daemons: every backend runs with only
// CAP_NET_ADMIN and CAP_NET_RAW (setpriv) and still forwards pod traffic, installs and removes its
// iptables rules, and drops forged datagrams from non-lease senders; the state files it writes get
// sane modes whatever the umask; and no secret (etcd password, TLS key) reaches the log, at trace
// level, with a failing etcd auth and with a bad key. etcd TLS with client certificates end to end is
// in config-and-tls.test.ts.
import t, { type Test } from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../lib/run-command.js';
import { EtcdServer } from '../../deploy/local/etcd-server.js';
import { type DaemonHandle, LocalCluster, daemonPath, readEnvFile } from '../../deploy/local/local-cluster.js';
import { type SpawnedProcess, execIn, ipIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import { type NodeHost, type PodHost, UNDERLAY_GATEWAY } from '../../deploy/local/topology.js';
import { dumpLogsIfFailed, logLines, pingAllPairs, running, sample, scrape, until } from '../helpers/probes.js';
import { FILE_WRITE_SYSCALLS, fileWrites, readTrace, straceAvailable, straceArgs } from '../helpers/strace.js';

const PORT = 10265;
const CAPS = ['--inh-caps=-all,+net_admin,+net_raw', '--ambient-caps=-all,+net_admin,+net_raw', '--bounding-set=-all,+net_admin,+net_raw'];
/** CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/<pid>/status prints the sets. */
const NET_ADMIN_RAW = '0000000000003000';

t.setTimeout(10 * 60_000);

/** A clean environment: no FLANNELD_* from the test's own. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLANNELD_') && k !== 'NOTIFY_SOCKET') env[k] = v;
  return { ...env, ...extra };
}

/**
 * Starts flanneld in a node's namespace under setpriv with only CAP_NET_ADMIN and CAP_NET_RAW (and
 * an optional umask), registered with the cluster like startDaemon's. `ip netns exec`, sh and setpriv
 * all exec, so the process id is the daemon's.
 */
function startConfined(c: LocalCluster, node: NodeHost, extra: readonly string[] = [], o: { umask?: string; subnetFile?: string; env?: NodeJS.ProcessEnv } = {}): DaemonHandle {
  const subnetFile = o.subnetFile ?? c.subnetFileOf(node);
  const daemonArgs = [daemonPath(), `--etcd-endpoints=${c.etcdEndpoint}`, `--etcd-prefix=${c.prefix}`, `--subnet-file=${subnetFile}`, '--iface=eth0', ...extra];
  const proc = spawnIn(node.ns, 'sh', ['-c', `umask ${o.umask ?? '022'} && exec setpriv "$@"`, 'sh', ...CAPS, process.execPath, ...daemonArgs], cleanEnv(o.env));
  const handle = { node, proc, subnetFile };
  c.daemons.set(node.name, handle);
  return handle;
}

function capabilities(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(Cap\w+|Uid|NoNewPrivs):\s+(.*)$/.exec(line);
    if (m) out[m[1] as string] = (m[2] as string).trim();
  }
  return out;
}

/** Sends one UDP datagram from inside a namespace (source address `from`). */
async function sendDatagram(ns: string, from: string, to: string, port: number, payload: Buffer): Promise<void> {
  const script = `const s=require("dgram").createSocket("udp4");s.bind(0,"${from}",()=>s.send(Buffer.from("${payload.toString('hex')}","hex"),${port},"${to}",(e)=>{if(e)throw e;s.close()}))`;
  const r = await execIn(ns, process.execPath, ['-e', script]);
  if (r.code !== 0) throw new Error(`sending a datagram in ${ns}: ${r.stderr}`);
}

function checksum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += (b[b.length - 1] as number) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** An IPv4 ICMP echo request with valid checksums. */
function icmpEcho(src: string, dst: string): Buffer {
  const icmp = Buffer.concat([Buffer.from([8, 0, 0, 0, 0x42, 0x42, 0, 1]), Buffer.from('forged by the security test')]);
  icmp.writeUInt16BE(checksum(icmp), 2);
  const ip = Buffer.alloc(20);
  ip.writeUInt8(0x45, 0);
  ip.writeUInt16BE(20 + icmp.length, 2);
  ip.writeUInt8(64, 8);
  ip.writeUInt8(1, 9);
  Buffer.from(src.split('.').map(Number)).copy(ip, 12);
  Buffer.from(dst.split('.').map(Number)).copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([ip, icmp]);
}

/** VXLAN (VNI 1) + Ethernet around an IPv4 packet. */
function vxlanFrame(dstMac: string, srcMac: string, inner: Buffer): Buffer {
  const mac = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
  return Buffer.concat([Buffer.from([0x08, 0, 0, 0, 0, 0, 1, 0]), mac(dstMac), mac(srcMac), Buffer.from([0x08, 0x00]), inner]);
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const r = await runCommand('sh', ['-c', 'cd "$0" && exec openssl "$@"', dir, ...args]);
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
}

const BACKENDS: Array<{ name: string; config: object; port?: number }> = [
  { name: 'host-gw', config: { Type: 'host-gw' } },
  { name: 'udp', config: { Type: 'udp' }, port: 8285 },
  { name: 'vxlan (userspace)', config: { Type: 'vxlan' }, port: 8472 },
  { name: 'vxlan (kernel)', config: { Type: 'vxlan', Datapath: 'kernel' } },
];

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  for (const b of BACKENDS) {
    t.test(`${b.name}: only CAP_NET_ADMIN and CAP_NET_RAW, and it forwards pod traffic`, async (tt) => {
      const c = await LocalCluster.create({ tag: runTag('sc'), nodes: 2 });
      tt.teardown(() => c.destroy());
      const [n1, n2] = c.nodes as [NodeHost, NodeHost];
      try {
        await c.putConfig({ Network: '10.244.0.0/16', Backend: b.config });
        const ds = c.nodes.map((n) => startConfined(c, n, ['--ip-masq', `--healthz-port=${PORT}`]));
        const subnets = [await c.waitForSubnet(n1, 30_000), await c.waitForSubnet(n2, 30_000)];
        const pods: PodHost[] = [await c.addPod(n1, subnets[0] as string), await c.addPod(n2, subnets[1] as string)];
        tt.same(await pingAllPairs(c, pods, 20_000), [], 'pods on both nodes ping each other');
        for (const d of ds) {
          const pid = d.proc.child.pid as number;
          tt.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /flanneld\/main\.js/, `pid ${pid} is the daemon`);
          const caps = capabilities(pid);
          tt.equal(caps.CapEff, NET_ADMIN_RAW, `${d.node.name}: CapEff is exactly CAP_NET_ADMIN + CAP_NET_RAW (${caps.CapEff})`);
          tt.equal(caps.CapPrm, NET_ADMIN_RAW, `${d.node.name}: CapPrm too`);
          tt.equal(caps.CapBnd, NET_ADMIN_RAW, `${d.node.name}: and the bounding set, so no child gets more`);
          const denied = logLines(d.proc.output()).filter((l) => (l.level === 'warn' || l.level === 'error' || l.level === 'fatal')
            && /EPERM|EACCES|not permitted|permission denied/i.test(JSON.stringify(l)));
          tt.same(denied.map((l) => l.msg), [], `${d.node.name}: no permission error in the log`);
          const nat = await execIn(d.node.ns, 'iptables', ['-t', 'nat', '-S', 'FLANNEL-POSTRTG']);
          tt.ok(nat.code === 0 && nat.stdout.includes('MASQUERADE'), `${d.node.name}: --ip-masq rules installed`);
        }
        if (b.port) {
          // A datagram from the switch (192.0.2.254, no lease) and a spoofed inner source from node2 (a
          // lease holder): both dropped and counted, on by default.
          const before = await scrape(n1, PORT);
          const dst = (pods[0] as PodHost).ip;
          const mac = (JSON.parse(await ipIn(n1.ns, ['-j', 'link', 'show', 'flannel.1']).catch(() => '[{"address":"00:00:00:00:00:00"}]')) as Array<{ address: string }>)[0]?.address ?? '';
          const wrap = (inner: Buffer): Buffer => (b.port === 8472 ? vxlanFrame(mac, '0e:00:00:00:0b:ad', inner) : inner);
          await sendDatagram(c.topo.underlayNs, UNDERLAY_GATEWAY, n1.underlayIp, b.port, wrap(icmpEcho('10.244.250.9', dst)));
          await sendDatagram(n2.ns, n2.underlayIp, n1.underlayIp, b.port, wrap(icmpEcho('10.244.250.9', dst)));
          const drops = (text: string, reason: string): number => sample(text, `flanneld_datapath_dropped_packets_total{reason="${reason}"}`) ?? 0;
          await until('both forgeries counted', async () => {
            const now = await scrape(n1, PORT);
            return drops(now, 'unknown_source') > drops(before, 'unknown_source') && drops(now, 'spoofed_source') > drops(before, 'spoofed_source') ? true : undefined;
          }, 5000, 250).then(() => tt.pass('unknown_source and spoofed_source drops counted'), (err: Error) => tt.fail(err.message));
        }
        for (const d of ds) {
          tt.equal(await stopProcess(d.proc, 'SIGTERM'), 0, `${d.node.name}: SIGTERM exits 0`);
          const nat = await execIn(d.node.ns, 'iptables', ['-t', 'nat', '-S', 'FLANNEL-POSTRTG']);
          tt.not(nat.code, 0, `${d.node.name}: its iptables rules are removed on the way out`);
        }
      } finally {
        dumpLogsIfFailed(tt, c);
      }
    });
  }

  t.test('state files: subnet.env 0644 in a 0755 directory under umask 077, written atomically, nothing else', async (tt) => {
    const c = await LocalCluster.create({ tag: runTag('sf'), nodes: 2 });
    tt.teardown(() => c.destroy());
    const [n1, n2] = c.nodes as [NodeHost, NodeHost];
    try {
      await c.putConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
      // node1: the directories do not exist yet; node2: an old subnet.env of mode 0600 is replaced.
      const file1 = join(c.stateDir, 'n1', 'run', 'flannel', 'subnet.env');
      const file2 = join(c.stateDir, 'n2', 'subnet.env');
      mkdirSync(dirname(file2), { recursive: true, mode: 0o755 });
      writeFileSync(file2, 'FLANNEL_NETWORK=10.9.0.0/16\n', { mode: 0o600 });
      chmodSync(file2, 0o600);
      const ds = [startConfined(c, n1, [], { umask: '077', subnetFile: file1 }), startConfined(c, n2, [], { umask: '077', subnetFile: file2 })];
      for (const [d, file] of [[ds[0], file1], [ds[1], file2]] as const) {
        await until(`${d?.node.name}'s subnet.env`, () => {
          if (!running(d)) throw new Error(`flanneld exited:\n${d?.proc.output()}`);
          return readEnvFile(file).FLANNEL_SUBNET;
        }, 30_000);
      }
      for (const [name, path, mode] of [
        ['n1 subnet.env', file1, '644'], ['n1 run/flannel/', dirname(file1), '755'], ['n1 run/', dirname(dirname(file1)), '755'], ['n2 subnet.env (was 0600)', file2, '644'],
      ] as const) {
        const st = statSync(path);
        tt.equal((st.mode & 0o7777).toString(8), mode, `${name}: mode 0${mode} (umask 077)`);
        tt.equal(st.uid, 0, `${name}: owned by root`);
      }
      tt.same(readdirSync(dirname(file1)), ['subnet.env'], 'node1: only subnet.env in its directory (no temporary file left)');
      tt.same(readdirSync(dirname(file2)), ['subnet.env'], 'node2: only subnet.env in its directory');
      tt.match(readFileSync(file2, 'utf8'), /^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.\d+\.1\/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n$/, 'node2: the old file replaced whole');
    } finally {
      dumpLogsIfFailed(tt, c);
    }
  });

  // reliability.md §3.3 #5: the daemon's only file is subnet.env. Every syscall that creates, writes,
  // renames, removes or re-permissions a path is traced (strace -f, one file per thread) from start to
  // SIGTERM, with pods passing traffic; what the daemon's own threads did must be exactly: the
  // subnet.env directories (created here, they did not exist), the temporary file, its rename onto
  // subnet.env, sysctls under /proc/sys/net and, for the userspace data paths, /dev/net/tun. The
  // programs it runs (ip, iptables…) are separate processes, listed but not audited.
  const noStrace = (await straceAvailable()) ? false : 'strace is not installed (apt-get install strace, or deploy/local/install-deps.sh): file-write audit skipped';
  t.test('the daemon writes only subnet.env (strace -f: its directories, the temporary file, the rename), sysctls under /proc/sys/net and /dev/net/tun', { skip: noStrace }, async (tt) => {
    for (const b of BACKENDS) {
      await tt.test(b.name, async (t) => {
        const c = await LocalCluster.create({ tag: runTag('st'), nodes: 2 });
        const traceDir = mkdtempSync(join(tmpdir(), 'flannel-ts-strace-'));
        const prefix = join(traceDir, 'trace');
        let daemonPid = 0;
        let tracer: SpawnedProcess | undefined;
        t.teardown(async () => {
          if (daemonPid && tracer?.child.exitCode === null) { try { process.kill(daemonPid, 'SIGKILL'); } catch { /* gone */ } }
          if (tracer) await stopProcess(tracer, 'SIGKILL');
          await c.destroy();
          rmSync(traceDir, { recursive: true, force: true });
        });
        const [n1, n2] = c.nodes as [NodeHost, NodeHost];
        try {
          await c.putConfig({ Network: '10.244.0.0/16', Backend: b.config });
          const subnetFile = join(c.stateDir, 'n1', 'run', 'flannel', 'subnet.env');
          const args = [daemonPath(), `--etcd-endpoints=${c.etcdEndpoint}`, `--etcd-prefix=${c.prefix}`, `--subnet-file=${subnetFile}`, '--iface=eth0', '--ip-masq', `--healthz-port=${PORT}`];
          // libuv's io_uring file operations would bypass strace; they are off by default in Node 20, and off here for
          // certain. NODE_OPTIONS goes (-E): under tap it loads tap's process-info hook, which writes .tap/processinfo.
          tracer = spawnIn(n1.ns, 'strace', [...straceArgs(prefix, FILE_WRITE_SYSCALLS), '-E', 'NODE_OPTIONS', process.execPath, ...args], cleanEnv({ UV_USE_IO_URING: '0' }));
          c.daemons.set(n1.name, { node: n1, proc: tracer, subnetFile });
          c.startDaemon(n2, [], cleanEnv());
          const subnet1 = await until('n1\'s subnet.env', () => {
            if (!running(tracer)) throw new Error(`strace or flanneld exited:\n${tracer?.output()}`);
            return readEnvFile(subnetFile).FLANNEL_SUBNET;
          }, 30_000);
          const pods: PodHost[] = [await c.addPod(n1, subnet1), await c.addPod(n2, await c.waitForSubnet(n2, 30_000))];
          t.same(await pingAllPairs(c, pods, 20_000), [], `${b.name}: pods ping each other with the daemon under strace`);
          await until('the /metrics endpoint', () => scrape(n1, PORT).then(() => true, () => false), 10_000);
          const children = readFileSync(`/proc/${tracer.child.pid}/task/${tracer.child.pid}/children`, 'utf8').trim().split(/\s+/);
          t.equal(children.length, 1, 'strace runs one program, the daemon');
          daemonPid = Number(children[0]);
          t.match(readFileSync(`/proc/${daemonPid}/cmdline`, 'utf8'), /flanneld\/main\.js/, `pid ${daemonPid} is the daemon`);
          process.kill(daemonPid, 'SIGTERM');
          t.equal(await tracer.exited, 0, 'SIGTERM: the daemon exits 0 (strace passes its status on)');

          const trace = readTrace(prefix, daemonPath());
          const writes = fileWrites(trace.own);
          const dir = dirname(subnetFile);
          const tmp = join(dir, `.subnet.env.${daemonPid}.tmp`);
          const created = [dir, dirname(dir), dirname(dirname(dir))]; // n1/run/flannel, n1/run, n1: none existed
          const allowed = (w: { call: string; paths: string[] }): boolean => {
            const [p, to] = w.paths as [string, string | undefined];
            if (/^rename/.test(w.call)) return p === tmp && to === subnetFile;
            if (/^open|^creat/.test(w.call)) return p === tmp || p === '/dev/net/tun' || p.startsWith('/proc/sys/net/');
            if (/^unlink/.test(w.call)) return p === tmp;
            if (/^mkdir|^chmod|^fchmodat/.test(w.call)) return subnetFile.startsWith(`${p}/`) && p.startsWith(c.stateDir);
            return false;
          };
          const unexpected = writes.filter((w) => !allowed(w)).map((w) => `${w.call} ${w.paths.join(' → ')}${w.ok ? '' : ' (failed)'}`);
          const summary = [...new Set(writes.map((w) => `${w.call} ${w.paths.map((p) => p.replace(c.stateDir, '<state>')).join(' → ')}${w.ok ? '' : ' (failed)'}`))];
          t.comment(`${b.name}: ${trace.own.length} traced syscalls of the daemon's own threads, ${writes.length} writing: ${summary.join('; ')}; programs run: ${[...new Set(trace.children.map((ch) => ch.argv[0]))].join(', ')}`);
          t.ok(trace.own.some((s) => s.name.startsWith('open')), 'the trace saw the daemon open files at all');
          t.same(unexpected, [], 'nothing written outside the allowed set');
          const ok = (call: RegExp, path: string, to?: string): number => writes.filter((w) => w.ok && call.test(w.call) && w.paths[0] === path && (to === undefined || w.paths[1] === to)).length;
          t.equal(ok(/^open|^creat/, tmp), 1, 'the temporary file is created once');
          t.equal(ok(/^rename/, tmp, subnetFile), 1, 'and renamed onto subnet.env once');
          t.equal(writes.filter((w) => w.paths.includes(subnetFile) && !/^rename/.test(w.call)).length, 0, 'subnet.env itself is never opened for writing');
          t.same(created.filter((d) => ok(/^mkdir/, d) !== 1), [], 'the three missing directories are created, once each');
          const tun = ok(/^open/, '/dev/net/tun');
          if (b.port) t.ok(tun >= 1, `the userspace data path opens /dev/net/tun (${tun}×)`);
          else t.equal(tun, 0, 'no /dev/net/tun for a kernel data path');
          if (b.name === 'udp') t.ok(writes.some((w) => w.ok && w.paths[0] === '/proc/sys/net/ipv4/conf/flannel0/accept_local'), 'udp: net.ipv4.conf.flannel0.accept_local is set through /proc/sys/net');
          t.ok(trace.children.length > 0, `the programs it runs are separate processes (${trace.children.length}), not audited here`);
        } finally {
          dumpLogsIfFailed(t, c);
        }
      });
    }
  });

  t.test('secrets never reach the log: etcd password (right, wrong, from the environment) and TLS keys, at trace level', async (tt) => {
    const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-secrets-'));
    const c = await LocalCluster.create({ tag: runTag('ss'), nodes: 5 });
    let tlsEtcd: EtcdServer | undefined;
    const extra: SpawnedProcess[] = [];
    tt.teardown(async () => {
      for (const p of extra) await stopProcess(p, 'SIGTERM', 3000).catch(() => null);
      await tlsEtcd?.destroy().catch(() => {});
      await c.destroy();
      rmSync(dir, { recursive: true, force: true });
    });
    const [n1, n2, n3, n4, n5] = c.nodes as [NodeHost, NodeHost, NodeHost, NodeHost, NodeHost];
    const RIGHT = 'Right-pa55word-7f3a9c';
    const WRONG = 'Wr0ng-pa55word-e41b2d';
    const ENV_WRONG = 'Env-pa55word-0c9d8e';
    try {
      // Password auth on the plain etcd: root for the test, "flannel" with readwrite on the prefix.
      await c.putConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
      for (const args of [
        ['user', 'add', 'root', '--new-user-password=rootpw'], ['user', 'grant-role', 'root', 'root'],
        ['user', 'add', 'flannel', `--new-user-password=${RIGHT}`], ['role', 'add', 'flannel'],
        ['role', 'grant-permission', 'flannel', '--prefix=true', 'readwrite', '/coreos.com/network/'], ['user', 'grant-role', 'flannel', 'flannel'],
        ['auth', 'enable'],
      ]) await c.etcd.ctlChecked(args);
      const anonymous = await c.etcd.ctl(['get', '/coreos.com/network/config']);
      tt.not(anonymous.code, 0, 'etcd now refuses requests without credentials');

      const trace = ['--log-level=trace', '--etcd-username=flannel'];
      const right = c.startDaemon(n1, [...trace, `--etcd-password=${RIGHT}`], cleanEnv());
      const wrong = c.startDaemon(n2, [...trace, `--etcd-password=${WRONG}`], cleanEnv());
      const fromEnv = c.startDaemon(n3, trace, cleanEnv({ FLANNELD_ETCD_PASSWORD: ENV_WRONG }));

      // TLS with client certificates on a second etcd in the switch (port 2479).
      const f = (name: string): string => join(dir, name);
      writeFileSync(f('server.ext'), `subjectAltName=IP:${UNDERLAY_GATEWAY},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n`);
      writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
      await openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=flannel-ts secrets test CA');
      for (const who of ['server', 'client']) {
        await openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who === 'server' ? 'etcd' : 'flanneld'}`);
        await openssl(dir, 'x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.crt`, '-days', '2', '-extfile', `${who}.ext`);
      }
      // A key that does not match the certificate, and a "key" that is not PEM at all.
      await openssl(dir, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'other.key');
      writeFileSync(f('garbage.key'), 'not-a-key-but-secret-Zq81x0Pw\n', { mode: 0o600 });
      tlsEtcd = new EtcdServer({ ns: c.topo.underlayNs, listenIps: [UNDERLAY_GATEWAY, '127.0.0.1'], clientPort: 2479, peerPort: 2480, tls: { certFile: f('server.crt'), keyFile: f('server.key'), caFile: f('ca.crt') } });
      await tlsEtcd.start();
      await tlsEtcd.put('/coreos.com/network/config', JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } }));
      const tlsArgs = (n: NodeHost, key: string): string[] => [daemonPath(), `--etcd-endpoints=https://${UNDERLAY_GATEWAY}:2479`, `--etcd-cafile=${f('ca.crt')}`,
        `--etcd-certfile=${f('client.crt')}`, `--etcd-keyfile=${f(key)}`, `--subnet-file=${join(dir, n.name, 'subnet.env')}`, '--iface=eth0', '--log-level=trace'];
      const tlsGood = spawnIn(n4.ns, process.execPath, tlsArgs(n4, 'client.key'), cleanEnv());
      extra.push(tlsGood);
      // A mismatched key and a non-PEM "key": usage errors (exit 64) before any connection.
      const badKeys: Record<string, { code: number | null | 'still running'; out: string }> = {};
      for (const key of ['other.key', 'garbage.key']) {
        const p = spawnIn(n5.ns, process.execPath, tlsArgs(n5, key), cleanEnv());
        extra.push(p);
        const code = await Promise.race([p.exited, sleep(15_000).then(() => 'still running' as const)]);
        badKeys[key] = { code, out: p.output() };
      }
      const started = Date.now();

      await tt.test('the right password: a subnet; the password is nowhere in the output', async (t) => {
        const subnet = await c.waitForSubnet(n1, 30_000).catch((err: Error) => { t.fail(err.message); return undefined; });
        t.match(subnet ?? '', /^10\.244\.\d+\.1\/24$/, `a subnet through etcd auth: ${subnet}`);
        const startLine = logLines(right.proc.output()).find((l) => l.msg === 'starting flanneld');
        t.equal((startLine?.flags as Record<string, unknown> | undefined)?.['log-level'], 'trace', 'it ran with --log-level=trace');
        t.notOk(right.proc.output().includes(RIGHT), 'the password is not in the output');
        const flags = logLines(right.proc.output()).find((l) => l.msg === 'starting flanneld')?.flags as Record<string, unknown> | undefined;
        t.equal(flags?.['etcd-password'], '[redacted]', 'the start-up line shows it redacted');
      });

      await tt.test('a wrong password (flag, and FLANNELD_ETCD_PASSWORD): auth fails, never logged', async (t) => {
        await sleep(Math.max(0, 8000 - (Date.now() - started)));
        for (const [d, secret, how] of [[wrong, WRONG, 'flag'], [fromEnv, ENV_WRONG, 'environment']] as const) {
          t.ok(running(d), `${how}: still running, waiting for etcd`);
          t.same(readEnvFile(d.subnetFile), {}, `${how}: no subnet.env`);
          const errors = logLines(d.proc.output()).filter((l) => (l.level === 'error' || l.level === 'warn') && /etcd/i.test(l.msg ?? ''));
          t.ok(errors.length >= 1, `${how}: logs the etcd failure (${errors.length}×): ${errors[0]?.msg}`);
          t.ok(errors.some((l) => /auth|password|user/i.test(l.msg ?? '')), `${how}: the error says authentication failed`);
          t.notOk(d.proc.output().includes(secret), `${how}: the password is not in the output`);
          const flags = logLines(d.proc.output()).find((l) => l.msg === 'starting flanneld')?.flags as Record<string, unknown> | undefined;
          t.equal(flags?.['etcd-password'], '[redacted]', `${how}: shown redacted`);
        }
      });

      await tt.test('TLS keys: the right key works, a mismatched or non-PEM key fails, no key material is ever logged', async (t) => {
        const subnet = await until('the TLS daemon\'s subnet.env', () => {
          if (!running(tlsGood)) throw new Error(`exited:\n${tlsGood.output()}`);
          return readEnvFile(join(dir, n4.name, 'subnet.env')).FLANNEL_SUBNET;
        }, 30_000).catch((err: Error) => { t.fail(err.message); return undefined; });
        t.match(subnet ?? '', /^10\.244\.\d+\.1\/24$/, `a subnet over TLS with the client key: ${subnet}`);
        t.same(readEnvFile(join(dir, n5.name, 'subnet.env')), {}, 'the bad keys get no subnet');
        for (const [key, want] of [['other.key', /--etcd-keyfile: the key in \S+other\.key does not belong to the certificate in --etcd-certfile \S+client\.crt/],
          ['garbage.key', /--etcd-keyfile: \S+garbage\.key is not an unencrypted PEM private key/]] as const) {
          const r = badKeys[key] as { code: number | null | 'still running'; out: string };
          t.equal(r.code, 64, `${key}: exits 64 (usage) at once`);
          const fatal = logLines(r.out).find((l) => l.level === 'fatal');
          t.match(fatal?.msg ?? '', want, `${key}: says which flag and file: ${fatal?.msg}`);
        }
        const keyLines = (name: string): string[] => readFileSync(f(name), 'utf8').split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'));
        for (const [name, out] of [['client.key', tlsGood.output()], ['other.key', badKeys['other.key']?.out ?? ''], ['garbage.key', badKeys['garbage.key']?.out ?? '']] as const) {
          const leaked = keyLines(name).filter((l) => out.includes(l.trim()));
          t.same(leaked, [], `${name}: no line of the key in the output`);
          t.notOk(/PRIVATE KEY/.test(out), `${name}: no PEM key block in the output`);
        }
      });
    } finally {
      dumpLogsIfFailed(tt, c, { 'tls daemons': extra.map((p) => p.output()).join('\n----\n') });
    }
  });

  t.test('the anti-spoofing defaults of udp and userspace vxlan are documented', async (tt: Test) => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    tt.match(readme, /accepted only from a PublicIP that holds a current lease \(`drop_unknown_source`\)/, 'udp: only lease holders (drop_unknown_source)');
    tt.match(readme, /inner source outside the sending peer's subnet is dropped \(`drop_spoofed_source`\)/, 'udp: spoofed inner sources (drop_spoofed_source)');
    tt.match(readme, /non-lease senders, inner source MAC or IP that is not the peer's[^.]*dropped and counted/, 'userspace vxlan: non-lease senders and spoofed inner MAC/IP');
    tt.match(readme, /inner destination outside this node's own subnet is dropped \(`drop_foreign_destination`\)/, 'udp: inner destinations outside our subnet (drop_foreign_destination)');
    tt.match(readme, /accept traffic only from lease holders, drop spoofed inner\s+sources and inner destinations outside the node's subnet; flannel accepts anything/, 'listed among the differences from flannel');
    tt.match(readme, /`flanneld_datapath_dropped_packets_total`[^\n]*`unknown_source`, `spoofed_source`[^\n]*`foreign_destination`/, 'and counted in /metrics by reason');
  });
}
