// flannel's iptables rules: ip-masq (nat FLANNEL-POSTRTG) and forward accepts (filter FLANNEL-FWD).
// Installed with iptables-restore, one jump each from POSTROUTING/FORWARD, re-checked by resync(),
// and removed again on clean shutdown (unlike flannel, which leaves them behind). One instance per
// address family: IPv4 with iptables, IPv6 (dual-stack) with ip6tables and the same chain names,
// with ff00::/8 where IPv4 excludes 224.0.0.0/4 from masquerading, as flannel does.
import { runChecked, runCommand } from '../../lib/run-command.js';
import { FlannelError } from '../../lib/errors.js';
import { formatCidr4, parseCidr4 } from '../../lib/ip.js';
import { formatCidr6, parseCidr6 } from '../../lib/ip6.js';

export type Family = 4 | 6;

export interface MasqueradeSpec {
  /** The overlay Network CIDR (C), e.g. "10.244.0.0/16". */
  readonly network: string;
  /** This node's leased subnet (P), e.g. "10.244.3.0/24". */
  readonly subnet: string;
  /** Ask for `MASQUERADE --random-fully`; used only when this iptables supports it. */
  readonly randomFully: boolean;
}

export interface IptablesRulesOptions {
  /** 4 (iptables, the default) or 6 (ip6tables); the CIDRs must be of this family. */
  readonly family?: Family;
  /** Install the ip-masq rules (--ip-masq); undefined = none. */
  readonly masq?: MasqueradeSpec;
  /** Network CIDR for the FORWARD accept rules (--iptables-forward-rules); undefined = none. */
  readonly forwardNetwork?: string;
}

/** One chain of ours: its table, the built-in chain that jumps to it, and its rules as iptables-save prints them. */
interface ChainSet {
  readonly table: 'nat' | 'filter';
  readonly chain: string;
  readonly parent: string;
  readonly comment: string;
  readonly rules: readonly string[];
}

const MASQ_COMMENT = 'flanneld masq';
const FWD_COMMENT = 'flanneld forward';
/** Bound on the delete loop, so a broken `-C` can never spin forever. */
const MAX_JUMP_DELETES = 100;

/** The commands of a family. */
interface Tools { readonly cmd: string; readonly save: string; readonly restore: string; readonly multicast: string }
const TOOLS: Record<Family, Tools> = {
  4: { cmd: 'iptables', save: 'iptables-save', restore: 'iptables-restore', multicast: '224.0.0.0/4' },
  6: { cmd: 'ip6tables', save: 'ip6tables-save', restore: 'ip6tables-restore', multicast: 'ff00::/8' },
};

const randomFullyProbes = new Map<Family, Promise<boolean>>();

/** Whether this iptables (or ip6tables) knows `MASQUERADE --random-fully` (probed once per process). */
export function iptablesHasRandomFully(family: Family = 4): Promise<boolean> {
  let probe = randomFullyProbes.get(family);
  if (!probe) {
    probe = runCommand(TOOLS[family].cmd, ['-j', 'MASQUERADE', '--help']).then(
      (r) => (r.stdout + r.stderr).includes('--random-fully'),
      () => false,
    );
    randomFullyProbes.set(family, probe);
  }
  return probe;
}

function cidr(family: Family, text: string, what: string): string {
  // normalized the way iptables-save / ip6tables-save print it
  if (family === 6) {
    const c = parseCidr6(text);
    if (!c || text.includes('.')) throw new FlannelError('FLN_ERR_CONFIG_INVALID', `${what} ${JSON.stringify(text)} is not an IPv6 CIDR`);
    return formatCidr6(c);
  }
  const c = parseCidr4(text);
  if (!c) throw new FlannelError('FLN_ERR_CONFIG_INVALID', `${what} ${JSON.stringify(text)} is not an IPv4 CIDR`);
  return formatCidr4(c);
}

const commentArg = (comment: string): string => `-m comment --comment "${comment}"`;

function masqSet(t: Tools, c: string, p: string, randomFully: boolean): ChainSet {
  const m = commentArg(MASQ_COMMENT);
  const masq = randomFully ? '-j MASQUERADE --random-fully' : '-j MASQUERADE';
  const rules = [
    `-m mark --mark 0x4000/0x4000 ${m} -j RETURN`,
    `-s ${p} -d ${c} ${m} -j RETURN`,
    `-s ${c} -d ${p} ${m} -j RETURN`,
    `! -s ${c} -d ${p} ${m} -j RETURN`,
    `-s ${c} ! -d ${t.multicast} ${m} ${masq}`,
    `! -s ${c} -d ${c} ${m} ${masq}`,
  ];
  return { table: 'nat', chain: 'FLANNEL-POSTRTG', parent: 'POSTROUTING', comment: MASQ_COMMENT, rules };
}

function forwardSet(c: string): ChainSet {
  const m = commentArg(FWD_COMMENT);
  const rules = [`-s ${c} ${m} -j ACCEPT`, `-d ${c} ${m} -j ACCEPT`];
  return { table: 'filter', chain: 'FLANNEL-FWD', parent: 'FORWARD', comment: FWD_COMMENT, rules };
}

const ruleLines = (s: ChainSet): string[] => s.rules.map((r) => `-A ${s.chain} ${r}`);
const jumpLine = (s: ChainSet): string => `-A ${s.parent} ${commentArg(s.comment)} -j ${s.chain}`;
const hasChain = (lines: readonly string[], s: ChainSet): boolean => lines.some((l) => l.startsWith(`:${s.chain} `));
const countJumps = (lines: readonly string[], s: ChainSet): number => lines.filter((l) => l === jumpLine(s)).length;

function jumpArgs(op: '-C' | '-D' | '-A', s: ChainSet): string[] {
  return ['-w', '-t', s.table, op, s.parent, '-m', 'comment', '--comment', s.comment, '-j', s.chain];
}

async function saveTable(t: Tools, table: string): Promise<string[]> {
  const out = await runChecked(t.save, ['-t', table], `reading ${t.cmd} table ${table}`);
  return out.split('\n').map((l) => l.trimEnd());
}

/** True when the chain exists, holds exactly our rules in order, and is jumped to exactly once. */
function isIntact(lines: readonly string[], s: ChainSet): boolean {
  const ours = lines.filter((l) => l.startsWith(`-A ${s.chain} `));
  return hasChain(lines, s) && countJumps(lines, s) === 1 && ours.join('\n') === ruleLines(s).join('\n');
}

async function deleteJumps(t: Tools, s: ChainSet): Promise<void> {
  for (let i = 0; i < MAX_JUMP_DELETES; i++) {
    if ((await runCommand(t.cmd, jumpArgs('-C', s))).code !== 0) return;
    await runChecked(t.cmd, jumpArgs('-D', s), `deleting the ${t.cmd} ${s.parent} jump to ${s.chain}`);
  }
}

/** Creates or flushes our chain, refills it in order, then makes the parent jump exist exactly once. */
async function install(t: Tools, s: ChainSet): Promise<void> {
  const payload = [`*${s.table}`, `:${s.chain} - [0:0]`, ...ruleLines(s), 'COMMIT', ''].join('\n');
  await runChecked(t.restore, ['--noflush', '--wait'], `installing ${t.cmd} chain ${s.table}/${s.chain}`, payload);
  if (countJumps(await saveTable(t, s.table), s) === 1) return;
  await deleteJumps(t, s);
  await runChecked(t.cmd, jumpArgs('-A', s), `adding the ${t.cmd} ${s.parent} jump to ${s.chain}`);
}

/** Deletes every jump, then flushes and deletes the chain; a missing chain or jump is not an error. */
async function uninstall(t: Tools, s: ChainSet): Promise<void> {
  await deleteJumps(t, s);
  if (!hasChain(await saveTable(t, s.table), s)) return;
  await runChecked(t.cmd, ['-w', '-t', s.table, '-F', s.chain], `flushing ${t.cmd} chain ${s.table}/${s.chain}`);
  await runChecked(t.cmd, ['-w', '-t', s.table, '-X', s.chain], `deleting ${t.cmd} chain ${s.table}/${s.chain}`);
}

/** flannel's masquerade and forward rules for one node; all methods are serialized per instance. */
export class IptablesRules {
  readonly family: Family;
  readonly #tools: Tools;
  readonly #masq: MasqueradeSpec | undefined;
  readonly #forwardNetwork: string | undefined;
  #sets: Promise<ChainSet[]> | undefined;
  #tail: Promise<unknown> = Promise.resolve();

  /** Validates and normalizes the CIDRs; throws FLN_ERR_CONFIG_INVALID for bad ones. */
  constructor(opts: IptablesRulesOptions) {
    const f = opts.family ?? 4;
    this.family = f;
    this.#tools = TOOLS[f];
    const m = opts.masq;
    this.#masq = m && { network: cidr(f, m.network, 'masquerade network'), subnet: cidr(f, m.subnet, 'masquerade subnet'), randomFully: m.randomFully };
    this.#forwardNetwork = opts.forwardNetwork === undefined ? undefined : cidr(f, opts.forwardNetwork, 'forward network');
  }

  /** Installs every rule; idempotent, so a restart simply calls it again. */
  ensure(): Promise<void> {
    return this.#serial(async () => {
      for (const s of await this.#chainSets()) await install(this.#tools, s);
    });
  }

  /** Re-applies any chain whose rules, order or single jump changed; true when it repaired something. */
  resync(): Promise<boolean> {
    return this.#serial(async () => {
      let fixed = false;
      for (const s of await this.#chainSets()) {
        if (isIntact(await saveTable(this.#tools, s.table), s)) continue;
        await install(this.#tools, s);
        fixed = true;
      }
      return fixed;
    });
  }

  /** Removes our jumps and chains (clean shutdown); tries every table, then throws the first real error. */
  remove(): Promise<void> {
    return this.#serial(async () => {
      let firstError: unknown;
      for (const s of await this.#chainSets()) {
        await uninstall(this.#tools, s).catch((e: unknown) => { firstError ??= e; });
      }
      if (firstError !== undefined) throw firstError;
    });
  }

  #chainSets(): Promise<ChainSet[]> {
    this.#sets ??= (async () => {
      const sets: ChainSet[] = [];
      const m = this.#masq;
      if (m) sets.push(masqSet(this.#tools, m.network, m.subnet, m.randomFully && (await iptablesHasRandomFully(this.family))));
      if (this.#forwardNetwork !== undefined) sets.push(forwardSet(this.#forwardNetwork));
      return sets;
    })();
    return this.#sets;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}
