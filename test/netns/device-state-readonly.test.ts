// DeviceState where /proc/sys is read-only (as in an unprivileged container; here a mount namespace with /proc/sys
// bound read-only): accept_local is set through rtnetlink (the addon's ipv4DevconfSet), disable_ipv6=1 becomes
// addrgenmode none, and a device route to the whole network removes the routes of ours (proto 241) inside it that a
// host-gw flanneld left through another device; a second ensure() finds nothing to fix. Runs the compiled dist/.
import t from 'tap';
import { createNetns, deleteNetns, execIn, ipIn, runTag } from '../../deploy/local/netns.js';
import { runCommand } from '../../lib/run-command.js';

const DEVICE_STATE = new URL('../../dist/backends/datapath/device-state.js', import.meta.url).href;

t.test('ensure() with /proc/sys read-only', async (t) => {
  const created: string[] = [];
  const ns = `${runTag('ro')}-n`;
  t.teardown(() => deleteNetns(created));
  await createNetns(ns, created);
  await ipIn(ns, ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'fl0']);
  await ipIn(ns, ['addr', 'add', '192.0.2.1/24', 'dev', 'v0']);
  await ipIn(ns, ['link', 'set', 'v0', 'up']);
  await ipIn(ns, ['route', 'add', '10.244.5.0/24', 'via', '192.0.2.2', 'dev', 'v0', 'proto', '241']);
  await ipIn(ns, ['route', 'add', '10.99.0.0/24', 'via', '192.0.2.2', 'dev', 'v0', 'proto', '241']);

  const script = `const { DeviceState } = await import(${JSON.stringify(DEVICE_STATE)});
    const s = new DeviceState({ name: 'fl0', address: '10.244.9.0/32', mtu: 1400, route: '10.244.0.0/16 dev fl0',
      sysctls: { 'ipv4/accept_local': '1', 'ipv6/disable_ipv6': '1' } });
    const first = await s.ensure(); const second = await s.ensure(); console.log(JSON.stringify({ first, second }));`;
  const inner = `{ echo 1 > /proc/sys/net/ipv4/conf/fl0/accept_local; } 2>/dev/null && echo WRITABLE; exec ${process.execPath} --input-type=module -e "$0"`;
  const r = await runCommand('unshare', ['-m', 'sh', '-c',
    `mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec ip netns exec ${ns} sh -c '${inner}' "$0"`, script]);
  t.equal(r.code, 0, `ensure() succeeds: ${r.stderr}`);
  t.notMatch(r.stdout, /WRITABLE/, 'the precondition: /proc/sys is read-only for it');
  const counts = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { first: number; second: number };
  t.ok(counts.first > 0, `the first ensure() fixed ${counts.first} things`);
  t.equal(counts.second, 0, 'the second finds nothing to fix (addrgenmode none counts as disable_ipv6)');
  const read = await execIn(ns, 'cat', ['/proc/sys/net/ipv4/conf/fl0/accept_local']);
  t.equal(read.stdout.trim(), '1', 'accept_local=1 through rtnetlink');
  const link = JSON.parse((await execIn(ns, 'ip', ['-d', '-j', 'link', 'show', 'dev', 'fl0'])).stdout) as Array<{ inet6_addr_gen_mode?: string }>;
  t.equal(link[0]?.inet6_addr_gen_mode, 'none', 'IPv6 off on an IPv4 device: addrgenmode none');
  const routes = (await execIn(ns, 'ip', ['route', 'show'])).stdout;
  t.notMatch(routes, /10\.244\.5\.0\/24/, 'the stale host-gw route inside 10.244.0.0/16 is removed');
  t.match(routes, /10\.99\.0\.0\/24 via 192\.0\.2\.2 dev v0 proto 241/, 'one of ours outside the network is left alone');
  t.match(routes, /10\.244\.0\.0\/16 dev fl0/, 'the device route is there');
});
