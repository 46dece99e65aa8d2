// The vxlan slice of the network config, with flannel's keys and defaults (VNI 1, Port 0 = 8472,
// MTU = the underlay MTU before the 50-byte overhead) plus our Datapath choice.
import { ConfigError, type ConfigIssue } from '../../lib/errors.js';
import { parseJsonObject, pickFields } from '../../lib/json-fields.js';
import { PARTIAL_CHECKSUMS_FIELD } from '../datapath/partial-checksums.js';

/** The inner Ethernet header 14 + VXLAN 8 + UDP 8 + the outer IPv4 header 20. */
export const VXLAN_OVERHEAD = 50;
/** Over an IPv6 underlay: the outer IPv6 header is 40 bytes, not 20. */
export const VXLAN_OVERHEAD_V6 = 70;
export const VXLAN_DEFAULT_PORT = 8472;

export interface VxlanConfig {
  readonly vni: number;
  readonly port: number;
  /** Underlay MTU to assume; 0 = the external interface's. */
  readonly mtu: number;
  readonly directRouting: boolean;
  readonly gbp: boolean;
  readonly learning: boolean;
  readonly datapath: 'userspace' | 'kernel';
}

export function parseVxlanConfig(backend: Readonly<Record<string, unknown>>): VxlanConfig {
  const f = pickFields(backend, ['VNI', 'Port', 'MTU', 'DirectRouting', 'GBP', 'Learning', 'Datapath']);
  const issues: ConfigIssue[] = [];
  const int = (field: 'VNI' | 'Port' | 'MTU', dflt: number, min: number, max: number, what: string): number => {
    const v = f[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    issues.push({ field: `Backend.${field}`, value: v, expected: `must be ${what}` });
    return dflt;
  };
  const bool = (field: 'DirectRouting' | 'GBP' | 'Learning'): boolean => {
    const v = f[field];
    if (v === undefined || v === null || typeof v === 'boolean') return v === true;
    issues.push({ field: `Backend.${field}`, value: v, expected: 'must be true or false' });
    return false;
  };
  const vni = int('VNI', 1, 0, 16_777_215, 'a VXLAN network identifier from 0 to 16777215 (default 1)');
  const port = int('Port', 0, 0, 65_535, 'a UDP port from 1 to 65535, or 0 for the kernel default 8472') || VXLAN_DEFAULT_PORT;
  const mtu = int('MTU', 0, 0, 65_535, 'the underlay MTU in bytes (68 to 65535), or 0 for the interface MTU');
  if (mtu !== 0 && mtu < 68 + VXLAN_OVERHEAD) issues.push({ field: 'Backend.MTU', value: mtu, expected: `is too small: at least ${68 + VXLAN_OVERHEAD} leaves room for the 50-byte VXLAN overhead` });
  const datapath = f.Datapath ?? 'userspace';
  if (datapath !== 'userspace' && datapath !== 'kernel') {
    issues.push({ field: 'Backend.Datapath', value: datapath, expected: 'must be "userspace" (our packet engine, the default) or "kernel" (a kernel VXLAN device, as flannel)' });
  }
  const cfg: VxlanConfig = { vni, port, mtu, directRouting: bool('DirectRouting'), gbp: bool('GBP'), learning: bool('Learning'), datapath: datapath === 'kernel' ? 'kernel' : 'userspace' };
  if (cfg.datapath === 'userspace' && (cfg.gbp || cfg.learning)) {
    issues.push({ field: 'Backend.GBP/Learning', value: true, expected: 'are kernel VXLAN features: set "Datapath": "kernel" to use them' });
  }
  if (issues.length > 0) throw new ConfigError('the Backend section of the network config', issues);
  return cfg;
}

/** flannel's BackendData for a vxlan lease, byte for byte; a userspace VTEP adds AcceptsPartialChecksums. */
export function encodeVxlanBackendData(vni: number, mac: string, partialChecksums = false): string {
  const ext = partialChecksums ? `,"${PARTIAL_CHECKSUMS_FIELD}":true` : '';
  return `{"VNI":${vni},"VtepMAC":${JSON.stringify(mac)}${ext}}`;
}

/** The VtepMAC of a peer's BackendData, lowercased; undefined when missing or malformed. */
export function parseVtepMac(backendData: string | undefined): string | undefined {
  const raw = parseJsonObject(backendData);
  const mac = raw ? pickFields(raw, ['VtepMAC']).VtepMAC : undefined;
  return typeof mac === 'string' && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac) ? mac.toLowerCase() : undefined;
}
