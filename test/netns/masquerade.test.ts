// IptablesRules against a real kernel, inside throwaway network namespaces (never the host's rules):
// exact rule order, no duplicates across restarts, resync repairs, clean removal, and real masquerading.
import t from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../../lib/run-command.js';
import { IptablesRules, iptablesHasRandomFully } from '../../backends/kernel/masquerade.js';
import type { IptablesRulesOptions } from '../../backends/kernel/masquerade.js';

const CLI = fileURLToPath(new URL('./fixtures/masquerade-cli.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const C = '10.244.0.0/16';
const P = '10.244.3.0/24';
const FULL: IptablesRulesOptions = { masq: { network: C, subnet: P, randomFully: true }, forwardNetwork: C };
const NS = `fmq${process.pid}`;
const created: string[] = [];

async function sh(file: string, ...args: string[]): Promise<string> {
  const r = await runCommand(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}
const inNs = (ns: string, ...args: string[]): Promise<string> => sh('ip', 'netns', 'exec', ns, ...args);

async function addNs(name: string): Promise<void> {
  await sh('ip', 'netns', 'add', name);
  created.push(name);
}

/** Runs the fixture inside `ns`; returns one parsed JSON object per action. */
async function cli(ns: string, opts: IptablesRulesOptions, ...actions: string[]): Promise<Array<Record<string, unknown>>> {
  const r = await runCommand('ip', ['netns', 'exec', ns, process.execPath, '--import', TSX, CLI, JSON.stringify(opts), ...actions]);
  const out = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  if (r.code !== 0) throw new Error(`fixture exited ${r.code}: ${r.stdout}${r.stderr}`);
  return out;
}
const results = async (ns: string, opts: IptablesRulesOptions, ...actions: string[]): Promise<unknown[]> =>
  (await cli(ns, opts, ...actions)).map((o) => o.result);

/** Our lines of `iptables-save -t table` in `ns`, in order (chain declarations and rules). */
async function ours(ns: string, table?: string): Promise<string[]> {
  const out = await inNs(ns, 'iptables-save', ...(table ? ['-t', table] : []));
  return out.split('\n').filter((l) => !l.startsWith('#') && (l.includes('FLANNEL') || l.includes('flanneld')));
}

function expectedNat(randomFully: boolean, subnet = P): string[] {
  const m = '-m comment --comment "flanneld masq"';
  const masq = randomFully ? '-j MASQUERADE --random-fully' : '-j MASQUERADE';
  return [
    ':FLANNEL-POSTRTG - [0:0]',
    `-A POSTROUTING ${m} -j FLANNEL-POSTRTG`,
    `-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 ${m} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${subnet} -d ${C} ${m} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${C} -d ${subnet} ${m} -j RETURN`,
    `-A FLANNEL-POSTRTG ! -s ${C} -d ${subnet} ${m} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${C} ! -d 224.0.0.0/4 ${m} ${masq}`,
    `-A FLANNEL-POSTRTG ! -s ${C} -d ${C} ${m} ${masq}`,
  ];
}
const FWD = '-m comment --comment "flanneld forward"';
const EXPECTED_FILTER = [
  ':FLANNEL-FWD - [0:0]',
  `-A FORWARD ${FWD} -j FLANNEL-FWD`,
  `-A FLANNEL-FWD -s ${C} ${FWD} -j ACCEPT`,
  `-A FLANNEL-FWD -d ${C} ${FWD} -j ACCEPT`,
];
const NAT_JUMP = ['POSTROUTING', '-m', 'comment', '--comment', 'flanneld masq', '-j', 'FLANNEL-POSTRTG'];
const FWD_JUMP = ['FORWARD', '-m', 'comment', '--comment', 'flanneld forward', '-j', 'FLANNEL-FWD'];

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and iptables');
} else {
  const rf = await iptablesHasRandomFully();
  const hostBefore = (await sh('iptables-save')).split('\n').filter((l) => l.includes('flanneld')).length;
  t.teardown(async () => {
    for (const ns of created) await runCommand('ip', ['netns', 'del', ns]);
  });
  await addNs(NS);

  const EXACT = { nat: expectedNat(rf), filter: EXPECTED_FILTER };
  const snapshot = async (): Promise<typeof EXACT> => ({ nat: await ours(NS, 'nat'), filter: await ours(NS, 'filter') });

  t.test('ensure installs the exact rule set in order', async (tt) => {
    tt.same(await results(NS, FULL, 'ensure'), [null]);
    tt.same(await snapshot(), EXACT, 'exact rules, in order');
  });

  t.test('ensure twice and a restart keep one jump and one copy of each rule', async (tt) => {
    await results(NS, FULL, 'ensure', 'ensure');
    await results(NS, FULL, 'ensure');
    tt.same(await snapshot(), EXACT, 'exact rules, in order');
  });

  t.test('duplicate jumps left by earlier runs collapse to one', async (tt) => {
    await inNs(NS, 'iptables', '-w', '-t', 'nat', '-A', ...NAT_JUMP);
    await inNs(NS, 'iptables', '-w', '-t', 'nat', '-I', ...NAT_JUMP);
    await inNs(NS, 'iptables', '-w', '-t', 'filter', '-A', ...FWD_JUMP);
    await results(NS, FULL, 'ensure');
    tt.same(await snapshot(), EXACT, 'exact rules, in order');
  });

  t.test('resync on an intact set changes nothing', async (tt) => {
    tt.same(await results(NS, FULL, 'resync', 'resync'), [false, false]);
    tt.same(await snapshot(), EXACT, 'exact rules, in order');
  });

  t.test('resync repairs a deleted rule, jump, chain or a foreign extra rule', async (tt) => {
    const damage: Array<[string, string[]]> = [
      ['deleted masq rule', ['-t', 'nat', '-D', 'FLANNEL-POSTRTG', '-s', C, '-d', P, '-m', 'comment', '--comment', 'flanneld masq', '-j', 'RETURN']],
      ['deleted FORWARD jump', ['-t', 'filter', '-D', ...FWD_JUMP]],
      ['duplicate POSTROUTING jump', ['-t', 'nat', '-A', ...NAT_JUMP]],
      ['extra rule in our chain', ['-t', 'filter', '-A', 'FLANNEL-FWD', '-j', 'DROP']],
      ['flushed chain', ['-t', 'nat', '-F', 'FLANNEL-POSTRTG']],
    ];
    for (const [what, args] of damage) {
      await inNs(NS, 'iptables', '-w', ...args);
      tt.same(await results(NS, FULL, 'resync', 'resync'), [true, false], `${what}: repaired once, then intact`);
      tt.same(await snapshot(), EXACT, 'exact rules, in order');
    }
    await inNs(NS, 'iptables', '-w', '-t', 'nat', '-D', ...NAT_JUMP);
    await inNs(NS, 'iptables', '-w', '-t', 'nat', '-F', 'FLANNEL-POSTRTG');
    await inNs(NS, 'iptables', '-w', '-t', 'nat', '-X', 'FLANNEL-POSTRTG');
    tt.same(await results(NS, FULL, 'resync'), [true], 'deleted chain: repaired');
    tt.same(await snapshot(), EXACT, 'exact rules, in order');
  });

  t.test('remove leaves no chain, jump or comment, and is safe to repeat', async (tt) => {
    await inNs(NS, 'iptables', '-w', '-t', 'nat', '-A', ...NAT_JUMP); // a stray duplicate jump
    tt.same(await results(NS, FULL, 'remove', 'remove'), [null, null]);
    tt.same(await ours(NS), [], 'nothing of ours left in any table');
  });

  t.test('randomFully=false, masq only, host bits in the subnet', async (tt) => {
    const opts = { masq: { network: C, subnet: '10.244.3.7/24', randomFully: false } };
    tt.same(await results(NS, opts, 'ensure', 'resync'), [null, false]);
    tt.same(await ours(NS, 'nat'), expectedNat(false), 'no --random-fully, subnet normalized');
    tt.same(await ours(NS, 'filter'), [], 'no forward rules');
    await results(NS, opts, 'remove');
    tt.same(await ours(NS), []);
  });

  t.test('bad CIDRs are rejected with FLN_ERR_CONFIG_INVALID', async (tt) => {
    const BAD_CIDR = { name: 'FlannelError', code: 'FLN_ERR_CONFIG_INVALID' };
    tt.throws(() => new IptablesRules({ forwardNetwork: '10.244.0.0' }), BAD_CIDR);
    tt.throws(() => new IptablesRules({ masq: { network: C, subnet: 'x', randomFully: true } }), BAD_CIDR);
  });

  t.test('real traffic: a pod reaching outside C is masqueraded, and only while rules exist', async (tt) => {
    const [H, Pod, R] = [`fmqh${process.pid}`, `fmqp${process.pid}`, `fmqr${process.pid}`];
    for (const ns of [H, Pod, R]) await addNs(ns);
    await wire(H, Pod, R);
    const server = await startServer(R);
    tt.teardown(() => { server.kill(); });
    tt.equal(await probe(Pod), 'timeout', 'FORWARD policy DROP and no rules: no connection');
    await results(H, { forwardNetwork: C }, 'ensure');
    tt.equal(await probe(Pod), 'timeout', 'forward rules only: the reply has no route back to 10.244.3.2');
    await results(H, FULL, 'ensure');
    tt.equal(await probe(Pod), '192.0.2.1', 'masqueraded to the host address');
    await results(H, FULL, 'remove');
    tt.equal(await probe(Pod), 'timeout', 'after remove: no connection');
  });

  t.test('the host namespace rules were not touched', async (tt) => {
    const hostAfter = (await sh('iptables-save')).split('\n').filter((l) => l.includes('flanneld')).length;
    tt.equal(hostAfter, hostBefore);
  });
}

/** pod 10.244.3.2 —veth— 10.244.3.1 [host H, forwarding, FORWARD DROP] 192.0.2.1 —veth— 192.0.2.2 remote. */
async function wire(h: string, pod: string, remote: string): Promise<void> {
  const steps: string[][] = [
    ['-n', h, 'link', 'add', 'vpod', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod],
    ['-n', h, 'link', 'add', 'vrem', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', remote],
    ['-n', h, 'addr', 'add', '10.244.3.1/24', 'dev', 'vpod'],
    ['-n', h, 'addr', 'add', '192.0.2.1/24', 'dev', 'vrem'],
    ['-n', h, 'link', 'set', 'vpod', 'up'],
    ['-n', h, 'link', 'set', 'vrem', 'up'],
    ['-n', pod, 'addr', 'add', '10.244.3.2/24', 'dev', 'eth0'],
    ['-n', pod, 'link', 'set', 'eth0', 'up'],
    ['-n', pod, 'route', 'add', 'default', 'via', '10.244.3.1'],
    ['-n', remote, 'addr', 'add', '192.0.2.2/24', 'dev', 'eth0'],
    ['-n', remote, 'link', 'set', 'eth0', 'up'],
  ];
  for (const s of steps) await sh('ip', ...s);
  await inNs(h, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  await inNs(h, 'iptables', '-w', '-P', 'FORWARD', 'DROP');
}

const SERVER = `const s = require('node:net').createServer((c) => c.end(c.remoteAddress + '\\n'));
s.listen(8080, '192.0.2.2', () => console.log('ready'));
setTimeout(() => process.exit(0), 120000);`;
const CLIENT = `const c = require('node:net').connect({ host: '192.0.2.2', port: 8080 });
let d = ''; c.setTimeout(1500, () => { console.log('timeout'); process.exit(0); });
c.on('data', (x) => { d += x; }); c.on('end', () => { console.log(d.trim()); process.exit(0); });
c.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });`;

/** A TCP server in `ns` on 192.0.2.2:8080 that answers with the peer address it sees. */
function startServer(ns: string): Promise<ChildProcessWithoutNullStreams> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER]);
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(child); });
    child.on('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
}

/** What the server says our source address is, or 'timeout' when no connection came up. */
async function probe(ns: string): Promise<string> {
  return (await inNs(ns, process.execPath, '-e', CLIENT)).trim();
}
