// flanneld/subnet-env.ts: the subnet file as flannel's WriteSubnetFile writes it (pkg/subnet/subnet.go):
// FLANNEL_NETWORK, FLANNEL_SUBNET, then with IPv6 FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET (the first
// usable address), FLANNEL_MTU, FLANNEL_IPMASQ; and the previous subnets read back for reuse.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { formatSubnetEnv, readPreviousIpv6Subnet, readPreviousSubnet, writeSubnetEnv } from '../../flanneld/subnet-env.js';
import { type Cidr4, formatCidr4, parseCidr4 } from '../../lib/ip.js';
import { type Cidr6, formatCidr6, parseCidr6 } from '../../lib/ip6.js';

const c4 = (s: string): Cidr4 => parseCidr4(s) as Cidr4;
const c6 = (s: string): Cidr6 => parseCidr6(s) as Cidr6;

t.test('IPv4 only: exactly the four lines as before', async (t) => {
  t.equal(formatSubnetEnv({ network: c4('10.5.0.0/16'), subnet: c4('10.5.72.0/24'), mtu: 1450, ipMasq: true }),
    'FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
});

t.test('dual-stack: the IPv6 lines after FLANNEL_SUBNET, the subnet as its first address', async (t) => {
  t.equal(formatSubnetEnv({
    network: c4('10.5.0.0/16'), subnet: c4('10.5.72.0/24'),
    ipv6Network: c6('2001:cafe:42::/56'), ipv6Subnet: c6('2001:cafe:42:1::/64'), mtu: 1450, ipMasq: false,
  }), [
    'FLANNEL_NETWORK=10.5.0.0/16',
    'FLANNEL_SUBNET=10.5.72.1/24',
    'FLANNEL_IPV6_NETWORK=2001:cafe:42::/56',
    'FLANNEL_IPV6_SUBNET=2001:cafe:42:1::1/64',
    'FLANNEL_MTU=1450',
    'FLANNEL_IPMASQ=false',
    '',
  ].join('\n'));
  t.match(formatSubnetEnv({ network: c4('10.5.0.0/16'), subnet: c4('10.5.72.0/24'), ipv6Network: c6('fd00::/48'), ipv6Subnet: c6('fd00:0:0:ffff::/64'), mtu: 1, ipMasq: true }),
    /FLANNEL_IPV6_SUBNET=fd00:0:0:ffff::1\/64\n/, 'printed as Go prints an IP6Net');
  t.notMatch(formatSubnetEnv({ network: c4('10.5.0.0/16'), subnet: c4('10.5.72.0/24'), ipv6Network: c6('fd00::/48'), mtu: 1, ipMasq: true }),
    /IPV6/, 'no IPv6 lines without a lease IPv6 subnet');
});

t.test('written and read back: both previous subnets, masked to their networks', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'subnet-env-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'run', 'subnet.env');
  t.equal(readPreviousIpv6Subnet(path), undefined, 'no file');
  writeSubnetEnv(path, { network: c4('10.5.0.0/16'), subnet: c4('10.5.72.0/24'), ipv6Network: c6('2001:cafe:42::/56'), ipv6Subnet: c6('2001:cafe:42:7::/64'), mtu: 1450, ipMasq: true });
  t.match(readFileSync(path, 'utf8'), /^FLANNEL_NETWORK=.*\nFLANNEL_SUBNET=.*\nFLANNEL_IPV6_NETWORK=.*\nFLANNEL_IPV6_SUBNET=.*\nFLANNEL_MTU=/);
  t.equal(formatCidr4(readPreviousSubnet(path) as Cidr4), '10.5.72.0/24');
  t.equal(formatCidr6(readPreviousIpv6Subnet(path) as Cidr6), '2001:cafe:42:7::/64');
  writeSubnetEnv(path, { network: c4('10.5.0.0/16'), subnet: c4('10.5.72.0/24'), mtu: 1450, ipMasq: true });
  t.equal(readPreviousIpv6Subnet(path), undefined, 'an IPv4-only file has none');
  writeFileSync(path, 'FLANNEL_IPV6_SUBNET=not-an-address/64\n');
  t.equal(readPreviousIpv6Subnet(path), undefined, 'an unparsable value is none');
  writeFileSync(path, 'FLANNEL_IPV6_SUBNET=10.5.72.1/24\n');
  t.equal(readPreviousIpv6Subnet(path), undefined, 'an IPv4 value is none');
});
