// flannel's single-device wireguard modes, the choices that need no device: the outer address each mode
// dials (auto: flannel's selectPublicEndpoint with its RFC 1918 / RFC 4193 IsPrivate), the port read
// from a peer's lease, and the BackendData/BackendV6Data we advertise (both ListenPort).
import t from 'tap';
import { parseIp4 } from '../../lib/ip.js';
import { parseIp6 } from '../../lib/ip6.js';
import { encodeWireGuardBackendData } from '../../backends/wireguard/lease-data.js';
import { keyToBase64 } from '../../backends/wireguard/protocol/keys.js';
import {
  isFlannelPrivate4, isFlannelPrivate6, singleDeviceEndpoint, singleDeviceLeaseData, singleDeviceOuterFamily, singleDevicePeerData,
} from '../../backends/wireguard/single-device.js';

const v4 = (s: string) => parseIp4(s) as number;
const v6 = (s: string) => parseIp6(s) as bigint;
const KEY = Buffer.alloc(32, 9);

t.test('IsPrivate as flannel has it: RFC 1918 and RFC 4193 only', async (t) => {
  for (const s of ['10.0.0.1', '10.255.255.255', '172.16.0.1', '172.31.255.1', '192.168.1.1']) t.ok(isFlannelPrivate4(v4(s)), s);
  for (const s of ['172.15.0.1', '172.32.0.1', '192.0.2.1', '11.0.0.1', '127.0.0.1', '169.254.1.1', '192.169.0.1']) t.notOk(isFlannelPrivate4(v4(s)), s);
  for (const s of ['fc00::1', 'fd00:10::1', 'fdff:ffff::1']) t.ok(isFlannelPrivate6(v6(s)), s);
  for (const s of ['2001:db8::1', 'fe80::1', '::1', 'fb00::1', 'fe00::1', '2a00:1::1']) t.notOk(isFlannelPrivate6(v6(s)), s);
});

t.test('ipv4 and ipv6 dial PublicIP and PublicIPv6 whatever they are', async (t) => {
  const peer = { publicIp: v4('10.0.0.2'), publicIpv6: v6('fd00::2') };
  const own = { publicIp: v4('10.0.0.1'), publicIp6: v6('fd00::1') };
  t.equal(singleDeviceEndpoint('ipv4', peer, own), v4('10.0.0.2'));
  t.equal(singleDeviceEndpoint('ipv6', peer, own), v6('fd00::2'));
  t.equal(singleDeviceEndpoint('ipv6', { publicIp: v4('10.0.0.2') }, own), undefined, 'Mode ipv6 and a lease without PublicIPv6: nothing to dial');
  t.equal(singleDeviceOuterFamily('ipv4'), 4);
  t.equal(singleDeviceOuterFamily('ipv6'), 6);
  t.equal(singleDeviceOuterFamily('auto'), undefined);
});

t.test('auto: flannel\'s selectPublicEndpoint, case by case', async (t) => {
  const own = { publicIp: v4('192.168.0.1'), publicIp6: v6('2001:db8::1') };
  // no PublicIPv6: PublicIP, private or not
  t.equal(singleDeviceEndpoint('auto', { publicIp: v4('10.0.0.2') }, own), v4('10.0.0.2'));
  // a public PublicIP and we have IPv4: PublicIP even though both IPv6 addresses are public
  t.equal(singleDeviceEndpoint('auto', { publicIp: v4('192.0.2.2'), publicIpv6: v6('2001:db8::2') }, own), v4('192.0.2.2'));
  // a private PublicIP, both IPv6 addresses public: PublicIPv6
  t.equal(singleDeviceEndpoint('auto', { publicIp: v4('10.0.0.2'), publicIpv6: v6('2001:db8::2') }, own), v6('2001:db8::2'));
  // link-local counts as public in flannel's rule
  t.equal(singleDeviceEndpoint('auto', { publicIp: v4('10.0.0.2'), publicIpv6: v6('fe80::2') }, own), v6('fe80::2'));
  // a private PublicIP, the peer's IPv6 is ULA: PublicIP
  t.equal(singleDeviceEndpoint('auto', { publicIp: v4('10.0.0.2'), publicIpv6: v6('fd00::2') }, own), v4('10.0.0.2'));
  // a private PublicIP, our IPv6 is ULA: PublicIP
  t.equal(singleDeviceEndpoint('auto', { publicIp: v4('10.0.0.2'), publicIpv6: v6('2001:db8::2') }, { ...own, publicIp6: v6('fd00::1') }), v4('10.0.0.2'));
  // a private PublicIP, we have no IPv6 address: PublicIP
  t.equal(singleDeviceEndpoint('auto', { publicIp: v4('10.0.0.2'), publicIpv6: v6('2001:db8::2') }, { publicIp: v4('10.0.0.1') }), v4('10.0.0.2'));
  // a public PublicIP but we have no IPv4 address: on to the IPv6 rule
  t.equal(singleDeviceEndpoint('auto', { publicIp: v4('192.0.2.2'), publicIpv6: v6('2001:db8::2') }, { publicIp6: v6('2001:db8::1') }), v6('2001:db8::2'));
});

t.test('the port: BackendData\'s, else BackendV6Data\'s, else our ListenPort; ListenPortV6 advertised by a flannel peer is not dialed', async (t) => {
  const d = (port?: number) => (port === undefined ? `{"PublicKey":${JSON.stringify(keyToBase64(KEY))}}` : encodeWireGuardBackendData(KEY, port));
  t.equal(singleDevicePeerData({ backendData: d(51820), backendV6Data: d(51821) }, 51000)?.port, 51820);
  t.equal(singleDevicePeerData({ backendData: d(), backendV6Data: d(51821) }, 51000)?.port, 51000, 'no Port in BackendData (flannel < v0.26.6): our ListenPort');
  t.equal(singleDevicePeerData({ backendV6Data: d(52000) }, 51000)?.port, 52000, 'an IPv6-only lease: BackendV6Data');
  t.same(singleDevicePeerData({ backendData: d(51820) }, 51000)?.publicKey, KEY);
  t.equal(singleDevicePeerData({ backendData: '{"PublicKey":"nope"}', backendV6Data: d(51821) }, 51000), undefined, 'a bad BackendData is not rescued by BackendV6Data');
  t.equal(singleDevicePeerData({}, 51000), undefined);
});

t.test('our lease: the same key on ListenPort in both BackendData and BackendV6Data', async (t) => {
  const both = singleDeviceLeaseData(KEY, 51820, { v4: true, v6: true });
  t.equal(both.backendData, encodeWireGuardBackendData(KEY, 51820));
  t.equal(both.backendV6Data, both.backendData);
  t.same(singleDeviceLeaseData(KEY, 51820, { v4: true, v6: false }), { backendData: encodeWireGuardBackendData(KEY, 51820) });
  t.same(singleDeviceLeaseData(KEY, 51820, { v4: false, v6: true }), { backendV6Data: encodeWireGuardBackendData(KEY, 51820) });
});
