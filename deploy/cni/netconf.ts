// The plugin's network config (stdin) and the delegate config built from it and subnet.env, with
// flannel's rules: bridge by default, ipMasq = !FLANNEL_IPMASQ, mtu = FLANNEL_MTU, isGateway, and
// host-local IPAM over this node's subnet with a route to the whole flannel network.
import { CNI_CODES, CniError } from './cni-error.js';
import type { FlannelEnv } from './flannel-env.js';

export const SUPPORTED_VERSIONS = ['0.3.1', '0.4.0', '1.0.0'] as const;
export const DEFAULT_SUBNET_FILE = '/run/flannel/subnet.env';
export const DEFAULT_DATA_DIR = '/var/lib/cni/flannel';

type Json = Record<string, unknown>;

export interface NetConf {
  readonly cniVersion: string;
  readonly name: string;
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly delegate: Json;
  readonly ipam: Json;
  readonly runtimeConfig: Json | undefined;
  readonly prevResult: Json | undefined;
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function invalid(message: string): CniError {
  return new CniError(CNI_CODES.INVALID_CONFIG, message);
}

/** Parses the config JSON from stdin; code 6 when it is not a JSON object, 7 when a field is wrong. */
export function parseNetConf(text: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError(CNI_CODES.DECODE_FAILURE, `failed to decode the network config from stdin: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new CniError(CNI_CODES.DECODE_FAILURE, 'the network config on stdin must be a JSON object');
  const str = (key: string, dflt: string): string => {
    const v = raw[key] ?? dflt;
    if (typeof v !== 'string' || (v === '' && dflt !== '')) throw invalid(`"${key}" must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  };
  const obj = (key: string): Json | undefined => {
    const v = raw[key];
    if (v !== undefined && !isObject(v)) throw invalid(`"${key}" must be a JSON object, got ${JSON.stringify(v)}`);
    return v;
  };
  const ipam = obj('ipam') ?? {};
  if (ipam.routes !== undefined && !Array.isArray(ipam.routes)) throw invalid(`"ipam.routes" must be a list, got ${JSON.stringify(ipam.routes)}`);
  return {
    cniVersion: str('cniVersion', ''),
    name: str('name', ''),
    subnetFile: str('subnetFile', DEFAULT_SUBNET_FILE),
    dataDir: str('dataDir', DEFAULT_DATA_DIR),
    delegate: obj('delegate') ?? {},
    ipam,
    runtimeConfig: obj('runtimeConfig'),
    prevResult: obj('prevResult'),
  };
}

/** "0.4.0" → [0, 4, 0]; compares versions numerically. */
export function versionAtLeast(v: string, min: string): boolean {
  const a = v.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
}

export function checkVersion(conf: NetConf, command: string): void {
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(conf.cniVersion)) {
    throw new CniError(CNI_CODES.INCOMPATIBLE_VERSION,
      `incompatible CNI versions: config is ${JSON.stringify(conf.cniVersion)}, plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`);
  }
  if (command === 'CHECK' && !versionAtLeast(conf.cniVersion, '0.4.0')) {
    throw new CniError(CNI_CODES.INCOMPATIBLE_VERSION, `config version ${conf.cniVersion} does not allow CHECK (0.4.0 or later needed)`);
  }
}

/** The delegate's plugin type, validated: a plain file name to look up in CNI_PATH. */
export function delegateType(delegate: Json): string {
  const type = delegate.type ?? 'bridge';
  if (typeof type !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(type)) {
    throw invalid(`"delegate.type" must be a plugin name such as "bridge", got ${JSON.stringify(type)}`);
  }
  return type;
}

/** Builds the delegate config (what is saved under dataDir and sent to the delegate's ADD). */
export function buildDelegate(conf: NetConf, env: FlannelEnv): Json {
  for (const key of ['name', 'ipam'] as const) {
    if (key in conf.delegate) {
      throw new CniError(CNI_CODES.UNSUPPORTED_FIELD,
        `"delegate" must not contain "${key}": ${key === 'name' ? 'the network name is used' : 'put IPAM settings in the top-level "ipam"'}`,
        `delegate.${key}=${JSON.stringify(conf.delegate[key])}`);
    }
  }
  if (conf.name === '') throw invalid('"name" (the network name) is required');
  const d: Json = { ...conf.delegate, name: conf.name, type: delegateType(conf.delegate) };
  d.ipMasq ??= !env.ipMasq;
  d.mtu ??= env.mtu;
  if (d.type === 'bridge') {
    d.isGateway ??= true;
    d.hairpinMode ??= true;
  }
  d.cniVersion = conf.cniVersion;
  d.ipam = delegateIpam(conf.ipam, env);
  if (conf.runtimeConfig && Object.keys(conf.runtimeConfig).length > 0) d.runtimeConfig = conf.runtimeConfig;
  return d;
}

function delegateIpam(ipam: Json, env: FlannelEnv): Json {
  const ranges = [env.subnet, env.ipv6Subnet].filter((s): s is string => s !== undefined).map((subnet) => [{ subnet }]);
  const routes = [...((ipam.routes as unknown[] | undefined) ?? []), ...[...env.networks, ...env.ipv6Networks].map((dst) => ({ dst }))];
  return { ...ipam, type: ipam.type ?? 'host-local', ranges, routes };
}
