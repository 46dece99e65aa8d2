// The flannel CNI plugin's commands: ADD (subnet.env → delegate config, saved, then delegated), DEL
// (delegated from the saved config; idempotent), CHECK (delegated with the cached result) and VERSION.
// Pure apart from the files and the delegate it runs; main.ts does the process I/O.
import { CNI_CODES, CniError } from './cni-error.js';
import { findDelegate, invokeDelegate } from './delegate.js';
import { loadFlannelEnv } from './flannel-env.js';
import { SUPPORTED_VERSIONS, type NetConf, buildDelegate, checkVersion, delegateType, parseNetConf } from './netconf.js';
import { readScratch, removeScratch, saveScratch } from './scratch.js';

type Env = Readonly<Record<string, string | undefined>>;
type Json = Record<string, unknown>;

export interface PluginResult {
  readonly stdout: string;
  readonly exitCode: number;
}

interface CmdArgs {
  readonly command: 'ADD' | 'DEL' | 'CHECK';
  readonly containerId: string;
  readonly cniPath: readonly string[];
  readonly env: Env;
}

const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export function runPlugin(env: Env, stdin: string, log: (line: string) => void = () => {}): PluginResult {
  let version = '1.0.0';
  try {
    const command = env.CNI_COMMAND;
    if (!command) throw new CniError(CNI_CODES.INVALID_ENV, 'required env variables [CNI_COMMAND] missing');
    if (command === 'VERSION') return { stdout: versionInfo(stdin), exitCode: 0 };
    if (command !== 'ADD' && command !== 'DEL' && command !== 'CHECK') {
      throw new CniError(CNI_CODES.INVALID_ENV, `unknown CNI_COMMAND: ${command}`);
    }
    const args = readArgs(env, command);
    const conf = parseNetConf(stdin);
    if ((SUPPORTED_VERSIONS as readonly string[]).includes(conf.cniVersion)) version = conf.cniVersion;
    checkVersion(conf, command);
    const stdout = command === 'ADD' ? cmdAdd(args, conf) : command === 'DEL' ? cmdDel(args, conf, log) : cmdCheck(args, conf);
    return { stdout, exitCode: 0 };
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CNI_CODES.IO_FAILURE, (err as Error).message);
    return { stdout: `${JSON.stringify(e.toJSON(version))}\n`, exitCode: 1 };
  }
}

function versionInfo(stdin: string): string {
  let asked: unknown;
  try { asked = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion; } catch { /* no config given */ }
  const cniVersion = typeof asked === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(asked) ? asked : '1.0.0';
  return `${JSON.stringify({ cniVersion, supportedVersions: SUPPORTED_VERSIONS })}\n`;
}

function readArgs(env: Env, command: CmdArgs['command']): CmdArgs {
  const required = ['CNI_CONTAINERID', ...(command === 'DEL' ? [] : ['CNI_NETNS']), 'CNI_IFNAME', 'CNI_PATH'];
  const missing = required.filter((k) => !env[k]);
  if (missing.length > 0) throw new CniError(CNI_CODES.INVALID_ENV, `required env variables [${missing.join(',')}] missing`);
  const containerId = env.CNI_CONTAINERID as string;
  if (!CONTAINER_ID.test(containerId)) throw new CniError(CNI_CODES.INVALID_ENV, 'invalid characters in containerID', containerId);
  const ifname = env.CNI_IFNAME as string;
  if (ifname.length > 15 || ifname === '.' || ifname === '..' || /[/:\s]/.test(ifname)) {
    throw new CniError(CNI_CODES.INVALID_ENV, 'invalid interface name (at most 15 characters, no "/", ":" or spaces)', ifname);
  }
  return { command, containerId, cniPath: (env.CNI_PATH as string).split(':').filter(Boolean), env };
}

function cmdAdd(a: CmdArgs, conf: NetConf): string {
  const delegate = buildDelegate(conf, loadFlannelEnv(conf.subnetFile));
  const path = findDelegate(delegate.type as string, a.cniPath);
  const config = JSON.stringify(delegate);
  saveScratch(conf.dataDir, a.containerId, config);
  return invokeDelegate({ path, command: 'ADD', config, env: a.env });
}

function cmdDel(a: CmdArgs, conf: NetConf, log: (line: string) => void): string {
  const saved = readScratch(conf.dataDir, a.containerId);
  if (saved === undefined) return '';
  let delegate: Json;
  try {
    delegate = JSON.parse(saved) as Json;
  } catch (err) {
    log(`flannel: ignoring the unparsable saved config of ${a.containerId}: ${(err as Error).message}`);
    removeScratch(conf.dataDir, a.containerId);
    return '';
  }
  invokeDelegate({ path: findDelegate(delegateType(delegate), a.cniPath), command: 'DEL', config: saved, env: a.env });
  removeScratch(conf.dataDir, a.containerId);
  return '';
}

/**
 * CHECK hands the delegate the saved config plus the runtime's cached ADD result. A route cached
 * without "gw" was installed through the interface's gateway (the bridge plugin does that), so the
 * delegate is told that gateway; otherwise it could never match its own route.
 */
function cmdCheck(a: CmdArgs, conf: NetConf): string {
  const saved = readScratch(conf.dataDir, a.containerId);
  if (saved === undefined) {
    throw new CniError(CNI_CODES.UNKNOWN_CONTAINER, `container ${a.containerId} has no saved state in ${conf.dataDir}: it was never added, or was deleted`);
  }
  if (!conf.prevResult) throw new CniError(CNI_CODES.INVALID_CONFIG, 'CHECK needs "prevResult" (the cached ADD result) in the network config');
  const delegate = JSON.parse(saved) as Json;
  const config = JSON.stringify({ ...delegate, prevResult: withRouteGateways(conf.prevResult) });
  invokeDelegate({ path: findDelegate(delegateType(delegate), a.cniPath), command: 'CHECK', config, env: a.env });
  return '';
}

function withRouteGateways(result: Json): Json {
  const ips = Array.isArray(result.ips) ? (result.ips as Json[]) : [];
  const gateway = (v6: boolean): unknown => ips.map((ip) => ip.gateway).find((g) => typeof g === 'string' && g.includes(':') === v6);
  if (!Array.isArray(result.routes)) return result;
  const routes = (result.routes as Json[]).map((r) => {
    const gw = r.gw ?? gateway(String(r.dst).includes(':'));
    return gw === undefined ? r : { ...r, gw };
  });
  return { ...result, routes };
}
