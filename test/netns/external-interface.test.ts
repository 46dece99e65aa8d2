// The external interface and addresses flanneld picks (flanneld/external-interface.ts), inside a throwaway namespace
// with real links and addresses: for IPv4 as before, and in dual-stack the IPv6 address ranked as flannel #2293 asks
// (permanent > dynamic, non-temporary > temporary — a real kernel privacy address —, never deprecated, never
// link-local), --public-ipv6, and --iface / --iface-regex / --iface-can-reach naming or reaching the IPv6 address
// itself (flannel's open #2081). Default routes of the two families on different interfaces are refused, as flannel does.
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { InterfaceFlags } from '../../flanneld/external-interface.js';
import { runTag } from '../../deploy/local/netns.js';
import { runCommand } from '../../lib/run-command.js';

const CLI = fileURLToPath(new URL('./fixtures/external-interface-cli.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const NS = runTag('xi');

async function inNs(...args: string[]): Promise<string> {
  const r = await runCommand('ip', ['netns', 'exec', NS, ...args]);
  if (r.code !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}
const ip = (...args: string[]): Promise<string> => inNs('ip', ...args);

async function pick(flags: Partial<InterfaceFlags>): Promise<Record<string, string>> {
  const full: InterfaceFlags = { iface: [], ifaceRegex: [], ifaceCanReach: '', publicIp: '', ...flags };
  const r = await runCommand('ip', ['netns', 'exec', NS, process.execPath, '--import', TSX, CLI, JSON.stringify(full)]);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, string>;
}

t.before(async () => {
  await runCommand('ip', ['netns', 'add', NS]);
  // ea: the ranking interface. Addresses are added best first: the kernel lists the newest first, so the ranking,
  // not the order, must find the permanent global address.
  await ip('link', 'add', 'name', 'ea', 'type', 'veth', 'peer', 'name', 'ea-peer');
  await ip('link', 'add', 'name', 'eb', 'type', 'veth', 'peer', 'name', 'eb-peer');
  await ip('link', 'add', 'name', 'ec', 'type', 'veth', 'peer', 'name', 'ec-peer');
  for (const l of ['ea', 'ea-peer', 'eb', 'eb-peer', 'ec', 'ec-peer']) await ip('link', 'set', l, 'up');
  await inNs('sysctl', '-qw', 'net.ipv6.conf.ea.use_tempaddr=2');
  await ip('addr', 'add', '192.0.2.10/24', 'dev', 'ea');
  await ip('addr', 'add', '2001:db8:1::20/64', 'dev', 'ea', 'nodad'); // permanent
  await ip('addr', 'add', '2001:db8:1::30/64', 'dev', 'ea', 'mngtmpaddr', 'nodad', 'valid_lft', '7200', 'preferred_lft', '7200'); // dynamic; the kernel derives a temporary one
  await ip('addr', 'add', '2001:db8:1::40/64', 'dev', 'ea', 'nodad', 'valid_lft', '3600', 'preferred_lft', '3600'); // dynamic
  await ip('addr', 'add', '2001:db8:1::50/64', 'dev', 'ea', 'nodad', 'preferred_lft', '0'); // deprecated
  await ip('route', 'add', 'default', 'via', '192.0.2.254', 'dev', 'ea', 'onlink');
  await ip('-6', 'route', 'add', 'default', 'via', '2001:db8:1::fe', 'dev', 'ea');
  // eb: a second dual-stack interface, with only a dynamic and a deprecated IPv6 address besides the chosen one.
  await ip('addr', 'add', '198.51.100.10/24', 'dev', 'eb');
  await ip('addr', 'add', '2001:db8:2::10/64', 'dev', 'eb', 'nodad');
  await ip('-6', 'route', 'add', '2001:db8:99::/64', 'via', '2001:db8:2::fe', 'dev', 'eb');
  // ec: IPv4, a deprecated IPv6 address and a link-local one: neither is ever chosen.
  await ip('addr', 'add', '203.0.113.10/24', 'dev', 'ec');
  await ip('addr', 'add', '2001:db8:3::10/64', 'dev', 'ec', 'nodad', 'preferred_lft', '0');
  const flags = await ip('-j', 'addr', 'show', 'dev', 'ea');
  t.match(flags, /"temporary":true/, 'the kernel made a temporary (privacy) address on ea');
});
t.teardown(() => runCommand('ip', ['netns', 'del', NS]));

t.test('IPv4 only: as before, no IPv6 address is looked for', async (t) => {
  t.same(await pick({ iface: ['ec'] }), { name: 'ec', ip: '203.0.113.10', publicIp: '203.0.113.10' });
  t.same(await pick({}), { name: 'ea', ip: '192.0.2.10', publicIp: '192.0.2.10' }, 'the default route\'s interface');
});

t.test('dual-stack: the permanent IPv6 address wins over temporary, dynamic, deprecated and link-local ones', async (t) => {
  t.same(await pick({ ipv6: true }), { name: 'ea', ip: '192.0.2.10', publicIp: '192.0.2.10', ip6: '2001:db8:1::20', publicIp6: '2001:db8:1::20' });
  t.same(await pick({ ipv6: true, iface: ['ea'] }), { name: 'ea', ip: '192.0.2.10', publicIp: '192.0.2.10', ip6: '2001:db8:1::20', publicIp6: '2001:db8:1::20' });
  await ip('addr', 'del', '2001:db8:1::20/64', 'dev', 'ea');
  t.teardown(() => ip('addr', 'add', '2001:db8:1::20/64', 'dev', 'ea', 'nodad'));
  t.match(await ip('-j', 'addr', 'show', 'dev', 'ea'), /"temporary":true/, 'the temporary address is still there');
  const r = await pick({ ipv6: true, iface: ['ea'] });
  t.ok(['2001:db8:1::30', '2001:db8:1::40'].includes(r.ip6 as string), `without it: a dynamic non-temporary address (${r.ip6}), not the temporary one nor the deprecated one`);
});

t.test('--public-ipv6 is advertised; the interface address stays the local one', async (t) => {
  t.same(await pick({ ipv6: true, iface: ['eb'], publicIpv6: '2001:db8:ffff::1' }),
    { name: 'eb', ip: '198.51.100.10', publicIp: '198.51.100.10', ip6: '2001:db8:2::10', publicIp6: '2001:db8:ffff::1' });
});

t.test('--iface, --iface-regex and --iface-can-reach select by the IPv6 address (flannel #2081)', async (t) => {
  const eb = { name: 'eb', ip: '198.51.100.10', publicIp: '198.51.100.10', ip6: '2001:db8:2::10', publicIp6: '2001:db8:2::10' };
  t.same(await pick({ ipv6: true, iface: ['2001:db8:2:0::10'] }), eb, '--iface=<IPv6 address> (any spelling)');
  t.same(await pick({ ipv6: true, iface: ['198.51.100.10'] }), eb, '--iface=<IPv4 address>: the IPv6 address of the same interface');
  t.same(await pick({ ipv6: true, ifaceRegex: ['^2001:db8:2:'] }), eb, '--iface-regex matching the IPv6 address');
  t.same(await pick({ ipv6: true, ifaceCanReach: '2001:db8:99::1' }), eb, '--iface-can-reach an IPv6 destination');
});

t.test('refusals name the problem and list the interfaces', async (t) => {
  const noV6 = await pick({ ipv6: true, iface: ['ec'] });
  t.equal(noV6.code, 'FLN_ERR_IFACE_NOT_FOUND');
  t.match(noV6.error, /no interface with an IPv4 and an IPv6 address \(ec lacks one\) matches --iface \["ec"\]/, 'an interface with only deprecated and link-local IPv6 addresses is not dual-stack');
  await ip('-6', 'route', 'replace', 'default', 'via', '2001:db8:2::fe', 'dev', 'eb');
  t.teardown(() => ip('-6', 'route', 'replace', 'default', 'via', '2001:db8:1::fe', 'dev', 'ea'));
  const split = await pick({ ipv6: true });
  t.match(split.error, /the IPv6 default route's interface eb must be the same as the IPv4 default route's interface ea/);
  t.match(split.error, /interfaces here: .*ea \(192\.0\.2\.10, 2001:db8:1::20/);
});
