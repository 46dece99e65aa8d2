// flanneld's command line, compatible with flannel's: `--flag=value`, `--flag value`, `-flag`, bool
// flags without a value, and every flag also settable as FLANNELD_<FLAG_WITH_UNDERSCORES> (the
// command line wins). A bad flag or value is a FLN_ERR_USAGE error; main maps it to exit code 64.
import { FlannelError } from '../lib/errors.js';
import { parseIp4 } from '../lib/ip.js';
import { parseIp6 } from '../lib/ip6.js';
import { annotationPrefix } from '../subnet/kube/annotations.js';

type Kind = 'string' | 'list' | 'bool' | 'int';

interface FlagSpec {
  readonly kind: Kind;
  readonly default: string | boolean | number | readonly string[];
  readonly help: string;
  readonly min?: number;
  readonly max?: number;
}

const FLAGS = {
  'etcd-endpoints': { kind: 'string', default: 'http://127.0.0.1:4001,http://127.0.0.1:2379', help: 'comma-separated list of etcd endpoints' },
  'etcd-prefix': { kind: 'string', default: '/coreos.com/network', help: 'etcd prefix' },
  'etcd-keyfile': { kind: 'string', default: '', help: 'SSL key file used to secure etcd communication' },
  'etcd-certfile': { kind: 'string', default: '', help: 'SSL certification file used to secure etcd communication' },
  'etcd-cafile': { kind: 'string', default: '', help: 'SSL Certificate Authority file used to secure etcd communication' },
  'etcd-username': { kind: 'string', default: '', help: 'username for BasicAuth to etcd' },
  'etcd-password': { kind: 'string', default: '', help: 'password for BasicAuth to etcd' },
  'kube-subnet-mgr': { kind: 'bool', default: false, help: 'contact the Kubernetes API for subnet assignment instead of etcd' },
  'kube-api-url': { kind: 'string', default: '', help: 'Kubernetes API server URL; with no --kubeconfig-file it is used bare (no credentials, no CA). Both empty: in-cluster config' },
  'kubeconfig-file': { kind: 'string', default: '', help: 'kubeconfig file location; both it and --kube-api-url empty: in-cluster config' },
  'kube-annotation-prefix': { kind: 'string', default: 'flannel.alpha.coreos.com', help: 'Kubernetes annotation prefix; can contain a single slash "example.com/flannel" and then annotations are "example.com/flannel-<name>"' },
  'net-config-path': { kind: 'string', default: '/etc/kube-flannel/net-conf.json', help: 'path to the network configuration file (with --kube-subnet-mgr)' },
  'set-node-network-unavailable': { kind: 'bool', default: true, help: 'set the node condition NetworkUnavailable to False (reason FlannelIsUp) once flannel runs (with --kube-subnet-mgr)' },
  iface: { kind: 'list', default: [], help: 'interface to use (IP or name) for inter-host communication; may be repeated, tried in order' },
  'iface-regex': { kind: 'list', default: [], help: 'regex matching the IP or name of the interface to use; may be repeated, tried after --iface' },
  'iface-can-reach': { kind: 'string', default: '', help: 'use the interface (and source address) that routes to this IP (IPv4, or IPv6 to choose the IPv6 address)' },
  'public-ip': { kind: 'string', default: '', help: 'IP accessible by other nodes for inter-host communication (defaults to the interface IP)' },
  'public-ipv6': { kind: 'string', default: '', help: 'IPv6 accessible by other nodes for inter-host communication, with EnableIPv6 (defaults to the interface\'s IPv6 address)' },
  'subnet-file': { kind: 'string', default: '/run/flannel/subnet.env', help: 'filename where env variables (subnet, MTU, ...) will be written to' },
  'subnet-lease-renew-margin': { kind: 'int', default: 60, min: 1, max: 1439, help: 'subnet lease renewal margin, in minutes' },
  'subnet-lease-ttl': { kind: 'int', default: 86400, min: 2, max: 86400 * 365, help: 'flannel-ts extension: TTL of the subnet lease in seconds (flannel fixes it at 24 h)' },
  'ip-masq': { kind: 'bool', default: false, help: 'setup IP masquerade rule for traffic destined outside of overlay network' },
  'ip-masq-fully-random-disable': { kind: 'bool', default: false, help: 'disable --random-fully in the masquerade rules' },
  'iptables-resync': { kind: 'int', default: 5, min: 1, max: 86400, help: 'resync period for iptables rules, in seconds' },
  'iptables-forward-rules': { kind: 'bool', default: true, help: 'add default accept rules to the FORWARD chain in iptables' },
  'healthz-ip': { kind: 'string', default: '0.0.0.0', help: 'the IP address for the healthz server to listen on' },
  'healthz-port': { kind: 'int', default: 0, min: 0, max: 65535, help: 'the port for the healthz server to listen on (0 to disable)' },
  'datapath-offload': { kind: 'bool', default: true, help: 'flannel-ts extension: use TSO, UDP GSO/GRO and coalescing in the udp and userspace vxlan data paths (false forces the per-packet path)' },
  'datapath-queues': { kind: 'int', default: 0, min: 0, max: 64, help: 'flannel-ts extension: device queues of the udp and userspace vxlan data paths, (0 = one per two cores)' },
  'datapath-threads': { kind: 'string', default: 'adaptive', help: 'flannel-ts extension: per device queue, a TX and an RX worker ("pair"), one worker for both directions ("shared": fewer threads and wakeups, less throughput on 2 cores), or one worker for both directions while traffic is light and a second one for RX under load ("adaptive")' },
  'datapath-spin-us': { kind: 'int', default: -1, min: -1, max: 10000, help: 'flannel-ts extension: microseconds a packet worker stays busy after traffic before it sleeps (0 = sleep at once; -1, the default: 200 for adaptive workers, whose lead busy-polls only while it predicts an answer, up to its smoothed delay plus four deviations, 0 for pair and shared, which would spin after every packet)' },
  'vxlan-datapath': { kind: 'string', default: '', help: 'flannel-ts extension: override the vxlan Backend.Datapath on this node ("userspace" or "kernel")' },
  'log-level': { kind: 'string', default: 'info', help: 'flannel-ts extension: log level (fatal, error, warn, info, debug, trace)' },
  version: { kind: 'bool', default: false, help: 'print version and exit' },
  help: { kind: 'bool', default: false, help: 'print this help and exit' },
} as const satisfies Record<string, FlagSpec>;

type FlagName = keyof typeof FLAGS;
type ValueOf<K extends FlagName> = (typeof FLAGS)[K]['kind'] extends 'bool' ? boolean
  : (typeof FLAGS)[K]['kind'] extends 'int' ? number
  : (typeof FLAGS)[K]['kind'] extends 'list' ? string[] : string;
export type Flags = { -readonly [K in FlagName]: ValueOf<K> };

/** Flags of flannel's that flanneld refuses, with what to do instead. */
const NOT_SUPPORTED: Record<string, string> = {};

function usageError(message: string): FlannelError {
  return new FlannelError('FLN_ERR_USAGE', `${message} (see flanneld --help)`);
}

/** Parses argv (without node and script) and the environment into validated flags. */
export function parseFlags(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Flags {
  const values = new Map<FlagName, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const m = /^--?([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) throw usageError(`unexpected argument ${JSON.stringify(arg)}; flanneld takes only flags`);
    const name = m[1] as string;
    if (NOT_SUPPORTED[name]) throw usageError(`--${name} is not supported: ${NOT_SUPPORTED[name]}`);
    if (!(name in FLAGS)) throw usageError(`unknown flag --${name}`);
    const spec = FLAGS[name as FlagName] as FlagSpec;
    let value = m[2];
    if (value === undefined) {
      if (spec.kind === 'bool') value = 'true';
      else if (i + 1 < argv.length) value = argv[++i] as string;
      else throw usageError(`flag needs an argument: --${name}`);
    }
    values.set(name as FlagName, [...(values.get(name as FlagName) ?? []), value]);
  }
  for (const name of Object.keys(FLAGS) as FlagName[]) {
    const envName = `FLANNELD_${name.toUpperCase().replace(/-/g, '_')}`;
    const v = env[envName];
    if (values.has(name) || v === undefined) continue;
    values.set(name, FLAGS[name].kind === 'list' ? v.split(',').map((s) => s.trim()).filter(Boolean) : [v]);
  }
  const flags = {} as Record<FlagName, unknown>;
  for (const name of Object.keys(FLAGS) as FlagName[]) {
    flags[name] = convert(name, FLAGS[name] as FlagSpec, values.get(name));
  }
  validate(flags as Flags);
  return flags as Flags;
}

function convert(name: string, spec: FlagSpec, raw: string[] | undefined): unknown {
  if (raw === undefined) return Array.isArray(spec.default) ? [...spec.default] : spec.default;
  const last = raw[raw.length - 1] as string;
  switch (spec.kind) {
    case 'list': return raw;
    case 'string': return last;
    case 'bool': {
      if (/^(1|t|true|TRUE|True)$/.test(last)) return true;
      if (/^(0|f|false|FALSE|False)$/.test(last)) return false;
      throw usageError(`invalid boolean value ${JSON.stringify(last)} for --${name}: use true or false`);
    }
    case 'int': {
      const n = Number(last);
      if (!/^-?\d+$/.test(last) || n < (spec.min ?? -Infinity) || n > (spec.max ?? Infinity)) {
        throw usageError(`invalid value ${JSON.stringify(last)} for --${name}: expected a whole number from ${spec.min} to ${spec.max}`);
      }
      return n;
    }
  }
}

function validate(f: Flags): void {
  for (const ep of f['etcd-endpoints'].split(',')) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(ep.trim())) {
      throw usageError(`invalid --etcd-endpoints entry ${JSON.stringify(ep)}: expected http://host:port or https://host:port`);
    }
  }
  for (const flag of ['public-ip', 'healthz-ip'] as const) {
    if (f[flag] !== '' && parseIp4(f[flag]) === undefined) throw usageError(`invalid --${flag} ${JSON.stringify(f[flag])}: expected an IPv4 address`);
  }
  if (f['public-ipv6'] !== '' && (f['public-ipv6'].includes('.') || parseIp6(f['public-ipv6']) === undefined)) {
    throw usageError(`invalid --public-ipv6 ${JSON.stringify(f['public-ipv6'])}: expected an IPv6 address`);
  }
  const reach = f['iface-can-reach'];
  if (reach !== '' && parseIp4(reach) === undefined && (reach.includes('.') || parseIp6(reach) === undefined)) {
    throw usageError(`invalid --iface-can-reach ${JSON.stringify(reach)}: expected an IPv4 or IPv6 address`);
  }
  for (const re of f['iface-regex']) {
    try { new RegExp(re); } catch (err) { throw usageError(`invalid --iface-regex ${JSON.stringify(re)}: ${(err as Error).message}`); }
  }
  if (!/^(shared|pair|adaptive)$/.test(f['datapath-threads'])) {
    throw usageError(`invalid --datapath-threads ${JSON.stringify(f['datapath-threads'])}: expected adaptive, pair or shared`);
  }
  if (!/^(|userspace|kernel)$/.test(f['vxlan-datapath'])) {
    throw usageError(`invalid --vxlan-datapath ${JSON.stringify(f['vxlan-datapath'])}: expected userspace or kernel`);
  }
  if (!/^(fatal|error|warn|info|debug|trace|silent)$/.test(f['log-level'])) {
    throw usageError(`invalid --log-level ${JSON.stringify(f['log-level'])}: expected fatal, error, warn, info, debug or trace`);
  }
  annotationPrefix(f['kube-annotation-prefix']); // throws FLN_ERR_USAGE with flannel's prefix rules
  if (f['kube-api-url'] !== '' && !/^https?:\/\/[^/\s]+\/?$/.test(f['kube-api-url'])) {
    throw usageError(`invalid --kube-api-url ${JSON.stringify(f['kube-api-url'])}: expected https://host:port or http://host:port`);
  }
  if (!f['etcd-certfile'] !== !f['etcd-keyfile']) throw usageError('--etcd-certfile and --etcd-keyfile must be given together');
}

/** Flags as they may be logged: secrets replaced. */
export function loggableFlags(f: Flags): Record<string, unknown> {
  return { ...f, 'etcd-password': f['etcd-password'] ? '[redacted]' : '' };
}

export function usage(): string {
  const lines = ['Usage: flanneld [flags]', '', 'A flannel-compatible overlay network daemon (etcd or Kubernetes subnet manager).', '', 'Flags:'];
  for (const [name, spec] of Object.entries(FLAGS) as Array<[string, FlagSpec]>) {
    const dflt = Array.isArray(spec.default) ? '' : spec.default === '' || spec.kind === 'bool' && !spec.default ? '' : ` (default ${JSON.stringify(spec.default)})`;
    lines.push(`  --${name}${spec.kind === 'bool' ? '' : ' value'}`, `        ${spec.help}${dflt}`);
  }
  lines.push('', 'Every flag can also be set as an environment variable FLANNELD_<FLAG>, e.g. FLANNELD_ETCD_ENDPOINTS.');
  return lines.join('\n');
}
