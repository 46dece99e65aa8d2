// Unit tests for subnet/lease.ts: lease keys (flannel-compat.md §1.3, pkg/subnet/subnet.go
// ParseSubnetKey / MakeSubnetKey) and lease values (§1.4, pkg/lease LeaseAttrs JSON).
import t from 'tap';
import {
  type LeaseAttrs, decodeLeaseAttrs, encodeLeaseAttrs, sameAttrs, subnetFromKey, subnetToKeyPart,
} from '../../../subnet/lease.js';
import { formatCidr4, parseCidr4, parseIp4 } from '../../../lib/ip.js';

const ip = (text: string): number => {
  const v = parseIp4(text);
  if (v === undefined) throw new Error(`test setup: bad IP ${text}`);
  return v;
};
const cidr = (text: string) => {
  const c = parseCidr4(text);
  if (c === undefined) throw new Error(`test setup: bad CIDR ${text}`);
  return c;
};
const keyCidr = (key: string): string | undefined => {
  const c = subnetFromKey(key);
  return c === undefined ? undefined : formatCidr4(c);
};

const VXLAN_DATA = '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}';

// ---- keys -------------------------------------------------------------------------------------

t.test('subnetToKeyPart writes <a.b.c.d>-<len>', async (t) => {
  t.equal(subnetToKeyPart(cidr('10.244.3.0/24')), '10.244.3.0-24');
  t.equal(subnetToKeyPart(cidr('10.5.52.0/24')), '10.5.52.0-24');
  t.equal(subnetToKeyPart(cidr('10.4.0.128/25')), '10.4.0.128-25');
  t.equal(subnetToKeyPart(cidr('192.168.0.4/30')), '192.168.0.4-30');
  t.equal(subnetToKeyPart(cidr('250.0.1.0/24')), '250.0.1.0-24', 'high addresses format unsigned');
});

t.test('subnetFromKey parses the last path element', async (t) => {
  t.equal(keyCidr('10.244.3.0-24'), '10.244.3.0/24');
  t.equal(keyCidr('/coreos.com/network/subnets/10.244.3.0-24'), '10.244.3.0/24', 'full etcd key');
  t.equal(keyCidr('/my-prefix/subnets/10.5.52.0-24'), '10.5.52.0/24', 'custom --etcd-prefix');
  t.equal(keyCidr('/coreos.com/network/subnets/10.4.0.128-25'), '10.4.0.128/25');
  t.equal(keyCidr('/coreos.com/network/subnets/192.168.0.4-30'), '192.168.0.4/30');
  t.equal(keyCidr('/coreos.com/network/subnets/10.0.0.0-8'), '10.0.0.0/8');
  t.equal(keyCidr('/coreos.com/network/subnets/10.0.0.2-31'), '10.0.0.2/31', '/31 is the longest (5-bit parse)');
  t.equal(keyCidr('/coreos.com/network/subnets/0.0.0.0-0'), '0.0.0.0/0');
  t.equal(keyCidr('/coreos.com/network/subnets/250.1.2.0-24'), '250.1.2.0/24');
});

t.test('subnetToKeyPart / subnetFromKey round trip', async (t) => {
  for (const text of ['10.244.3.0/24', '10.244.0.0/16', '10.4.0.128/25', '10.3.255.252/30', '172.16.0.0/12', '255.255.255.0/24']) {
    const c = cidr(text);
    t.same(subnetFromKey(`/coreos.com/network/subnets/${subnetToKeyPart(c)}`), c, text);
  }
});

t.test('subnetFromKey: dual-stack key <v4>-<len>&<v6>-<len> (flannel MakeSubnetKey)', async (t) => {
  // flannel's regex is (\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$ — the optional v6 part ends the key,
  // and ParseSubnetKey returns the v4 subnet 10.244.1.0/24 (plus the v6 one). A parser that returns
  // undefined here makes our daemon skip every dual-stack peer's lease, so the allocator would not see
  // 10.244.1.0/24 as taken and could hand it out a second time (a different etcd key, so the Txn guard
  // does not catch it).
  t.equal(keyCidr('10.244.1.0-24&fc00:0:0:1::-64'), '10.244.1.0/24', 'bare dual-stack key');
  t.equal(keyCidr('/coreos.com/network/subnets/10.244.1.0-24&fc00:0:0:1::-64'), '10.244.1.0/24', 'full dual-stack key');
  t.equal(keyCidr('/coreos.com/network/subnets/10.244.7.0-24&fc00:0:0:7::-64'), '10.244.7.0/24');
  t.equal(keyCidr('/coreos.com/network/subnets/10.42.3.0-24&2001:cafe:42:3::-64'), '10.42.3.0/24');
});

t.test('subnetFromKey: dual-stack keys with a bad v6 part are not subnets (flannel returns nil)', async (t) => {
  t.equal(subnetFromKey('/coreos.com/network/subnets/10.244.1.0-24&fc00:0:0:1::-128'), undefined, 'v6 length > 127');
  t.equal(subnetFromKey('/coreos.com/network/subnets/10.244.1.0-24&zz::-64'), undefined, 'v6 part not hex');
});

t.test('subnetFromKey: prefix length above 31 is not a subnet (strconv.ParseUint(…, 10, 5))', async (t) => {
  for (const len of ['32', '33', '64', '999', '4294967320']) {
    t.equal(subnetFromKey(`/coreos.com/network/subnets/10.244.3.0-${len}`), undefined, `-${len}`);
  }
});

t.test('subnetFromKey: keys with host bits set are rejected', async (t) => {
  t.equal(subnetFromKey('/coreos.com/network/subnets/10.244.3.1-24'), undefined, '10.244.3.1-24');
  t.equal(subnetFromKey('/coreos.com/network/subnets/10.244.3.128-24'), undefined, '10.244.3.128-24');
  t.equal(subnetFromKey('/coreos.com/network/subnets/10.244.3.0-16'), undefined, '10.244.3.0-16');
  t.equal(subnetFromKey('/coreos.com/network/subnets/10.4.0.64-25'), undefined, '10.4.0.64-25');
});

t.test('subnetFromKey: keys that are not subnets', async (t) => {
  for (const key of [
    '/coreos.com/network/config',
    '/coreos.com/network/subnets',
    '/coreos.com/network/subnets/',
    '/coreos.com/network/subnets/garbage',
    '/coreos.com/network/subnets/10.244.3.0',
    '/coreos.com/network/subnets/10.244.3.0/24',
    '/coreos.com/network/subnets/10.244.3.0-',
    '/coreos.com/network/subnets/10.244.3-24',
    '/coreos.com/network/subnets/10.244.3.0-24/extra',
    '/coreos.com/network/subnets/10.244.3.0-24x',
    '/coreos.com/network/subnets/256.244.3.0-24',
    '/coreos.com/network/subnets/10.300.3.0-24',
    '',
  ]) {
    t.equal(subnetFromKey(key), undefined, JSON.stringify(key));
  }
});

// ---- values: encoding, byte for byte ------------------------------------------------------------

t.test('encodeLeaseAttrs: host-gw', async (t) => {
  t.equal(
    encodeLeaseAttrs({ publicIp: ip('10.0.0.5'), backendType: 'host-gw' }),
    '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"}',
  );
});

t.test('encodeLeaseAttrs: udp writes no BackendType', async (t) => {
  t.equal(encodeLeaseAttrs({ publicIp: ip('10.0.0.5') }), '{"PublicIP":"10.0.0.5","PublicIPv6":null}');
  t.equal(encodeLeaseAttrs({ publicIp: ip('10.0.0.5'), backendType: '' }), '{"PublicIP":"10.0.0.5","PublicIPv6":null}',
    'empty BackendType is omitted (omitempty)');
});

t.test('encodeLeaseAttrs: vxlan with BackendData', async (t) => {
  t.equal(
    encodeLeaseAttrs({ publicIp: ip('192.168.64.3'), backendType: 'vxlan', backendData: VXLAN_DATA }),
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
  );
  t.equal(
    encodeLeaseAttrs({ publicIp: ip('192.168.64.3'), backendType: 'vxlan', backendData: '' }),
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan"}',
    'empty BackendData is omitted (omitempty RawMessage)',
  );
});

t.test('encodeLeaseAttrs: output is valid JSON with flannel field order', async (t) => {
  const text = encodeLeaseAttrs({ publicIp: ip('250.1.2.3'), backendType: 'vxlan', backendData: VXLAN_DATA });
  const parsed = JSON.parse(text) as Record<string, unknown>;
  t.same(Object.keys(parsed), ['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData']);
  t.equal(parsed.PublicIP, '250.1.2.3', 'high addresses format unsigned');
  t.equal(parsed.PublicIPv6, null);
  t.same(parsed.BackendData, { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' });
  t.equal(encodeLeaseAttrs({ publicIp: 0 }), '{"PublicIP":"0.0.0.0","PublicIPv6":null}', 'v4 disabled form');
});

// ---- values: decoding, lenient ------------------------------------------------------------------

t.test('decodeLeaseAttrs reads what flannel writes', async (t) => {
  t.same(decodeLeaseAttrs('{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"}'),
    { publicIp: ip('10.0.0.5'), backendType: 'host-gw' });
  t.same(decodeLeaseAttrs('{"PublicIP":"10.0.0.5","PublicIPv6":null}'), { publicIp: ip('10.0.0.5') });
  const vx = decodeLeaseAttrs(
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}');
  t.same(vx, { publicIp: ip('192.168.64.3'), backendType: 'vxlan', backendData: VXLAN_DATA });
});

t.test('decode(encode(x)) round trips and re-encodes byte for byte', async (t) => {
  const samples: LeaseAttrs[] = [
    { publicIp: ip('10.0.0.5') },
    { publicIp: ip('10.0.0.5'), backendType: 'host-gw' },
    { publicIp: ip('192.168.64.3'), backendType: 'vxlan', backendData: VXLAN_DATA },
    { publicIp: ip('250.0.0.1'), backendType: 'vxlan', backendData: '{"VNI":4096,"VtepMAC":"02:00:00:00:00:01"}' },
  ];
  for (const attrs of samples) {
    const text = encodeLeaseAttrs(attrs);
    const back = decodeLeaseAttrs(text);
    t.same(back, attrs, text);
    if (back) {
      t.ok(sameAttrs(back, attrs), 'sameAttrs after round trip');
      t.equal(encodeLeaseAttrs(back), text, 're-encoded identically');
    }
  }
});

t.test('decodeLeaseAttrs is lenient', async (t) => {
  t.same(decodeLeaseAttrs('{"publicip":"10.0.0.5","backendtype":"host-gw"}'),
    { publicIp: ip('10.0.0.5'), backendType: 'host-gw' }, 'lowercase keys');
  t.same(decodeLeaseAttrs('{"PUBLICIP":"10.0.0.5","BACKENDTYPE":"vxlan","BACKENDDATA":{"VNI":1}}'),
    { publicIp: ip('10.0.0.5'), backendType: 'vxlan', backendData: '{"VNI":1}' }, 'uppercase keys');
  t.same(decodeLeaseAttrs('{"PublicIP":"10.0.0.5","PublicIPv6":"fc00::5","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}'),
    { publicIp: ip('10.0.0.5'), backendType: 'vxlan', publicIpv6: 0xfc00_0000_0000_0000_0000_0000_0000_0005n, backendV6Data: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}' },
    'PublicIPv6 string and BackendV6Data read (lease-v6.test.ts has the dual-stack cases)');
  t.same(decodeLeaseAttrs('{"PublicIP":"10.0.0.5","HTTPPort":"8080","Extra":[1,2,3],"nested":{"a":1}}'),
    { publicIp: ip('10.0.0.5') }, 'extra fields ignored');
  t.same(decodeLeaseAttrs('{"PublicIP":"10.0.0.5","BackendType":"","BackendData":null}'),
    { publicIp: ip('10.0.0.5') }, 'empty BackendType and null BackendData mean none');
  t.same(decodeLeaseAttrs(' {\n  "PublicIP": "10.0.0.5",\n  "BackendType": "vxlan",\n  "BackendData": { "VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44" }\n} '),
    { publicIp: ip('10.0.0.5'), backendType: 'vxlan', backendData: VXLAN_DATA }, 'pretty-printed value; BackendData compacted');
});

t.test('decodeLeaseAttrs returns undefined for garbage', async (t) => {
  for (const text of [
    '', 'not json', '{', 'null', '[]', '"10.0.0.5"', '42', 'true',
    '{}',
    '{"PublicIP":null}',
    '{"PublicIP":""}',
    '{"PublicIP":"10.0.0"}',
    '{"PublicIP":"256.0.0.1"}',
    '{"PublicIP":"fc00::5"}',
    '{"PublicIP":167772165}',
    '{"PublicIP":["10.0.0.5"]}',
    '{"BackendType":"vxlan","BackendData":{"VNI":1}}',
  ]) {
    t.equal(decodeLeaseAttrs(text), undefined, JSON.stringify(text));
  }
});

t.test('sameAttrs', async (t) => {
  const a: LeaseAttrs = { publicIp: ip('10.0.0.5'), backendType: 'vxlan', backendData: VXLAN_DATA };
  t.ok(sameAttrs(a, { ...a }));
  t.notOk(sameAttrs(a, { ...a, publicIp: ip('10.0.0.6') }), 'other IP');
  t.notOk(sameAttrs(a, { ...a, backendType: 'host-gw' }), 'other type');
  t.notOk(sameAttrs(a, { ...a, backendData: '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"}' }), 'new VtepMAC');
  t.notOk(sameAttrs(a, { publicIp: ip('10.0.0.5') }), 'udp vs vxlan');
  t.ok(sameAttrs({ publicIp: 1 }, { publicIp: 1 }));
});
