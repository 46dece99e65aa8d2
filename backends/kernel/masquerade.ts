// flannel's iptables rules: ip-masq (nat FLANNEL-POSTRTG) and forward accepts (filter FLANNEL-FWD).
// Installed with iptables-restore, one jump each from POSTROUTING/FORWARD, re-checked by resync(),
// and removed again on clean shutdown (unlike flannel, which leaves them behind).
import { runChecked, runCommand } from '../../lib/run-command.js';
import { FlannelError } from '../../lib/errors.js';
import { formatCidr4, parseCidr4 } from '../../lib/ip.js';

export interface MasqueradeSpec {
  /** The overlay Network CIDR (C), e.g. "10.244.0.0/16". */
  readonly network: string;
  /** This node's leased subnet (P), e.g. "10.244.3.0/24". */
  readonly subnet: string;
  /** Ask for `MASQUERADE --random-fully`; used only when this iptables supports it. */
  readonly randomFully: boolean;
}

export interface IptablesRulesOptions {
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

let randomFullyProbe: Promise<boolean> | undefined;

/** Whether this iptables knows `MASQUERADE --random-fully` (probed once per process). */
export function iptablesHasRandomFully(): Promise<boolean> {
  randomFullyProbe ??= runCommand('iptables', ['-j', 'MASQUERADE', '--help']).then(
    (r) => (r.stdout + r.stderr).includes('--random-fully'),
    () => false,
  );
  return randomFullyProbe;
}

function cidr(text: string, what: string): string {
  const c = parseCidr4(text);
  if (!c) throw new FlannelError('FLN_ERR_CONFIG_INVALID', `${what} ${JSON.stringify(text)} is not an IPv4 CIDR`);
  return formatCidr4(c); // normalized the way iptables-save prints it
}

const commentArg = (comment: string): string => `-m comment --comment "${comment}"`;

function masqSet(c: string, p: string, randomFully: boolean): ChainSet {
  const m = commentArg(MASQ_COMMENT);
  const masq = randomFully ? '-j MASQUERADE --random-fully' : '-j MASQUERADE';
  const rules = [
    `-m mark --mark 0x4000/0x4000 ${m} -j RETURN`,
    `-s ${p} -d ${c} ${m} -j RETURN`,
    `-s ${c} -d ${p} ${m} -j RETURN`,
    `! -s ${c} -d ${p} ${m} -j RETURN`,
    `-s ${c} ! -d 224.0.0.0/4 ${m} ${masq}`,
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

async function saveTable(table: string): Promise<string[]> {
  const out = await runChecked('iptables-save', ['-t', table], `reading iptables table ${table}`);
  return out.split('\n').map((l) => l.trimEnd());
}

/** True when the chain exists, holds exactly our rules in order, and is jumped to exactly once. */
function isIntact(lines: readonly string[], s: ChainSet): boolean {
  const ours = lines.filter((l) => l.startsWith(`-A ${s.chain} `));
  return hasChain(lines, s) && countJumps(lines, s) === 1 && ours.join('\n') === ruleLines(s).join('\n');
}

async function deleteJumps(s: ChainSet): Promise<void> {
  for (let i = 0; i < MAX_JUMP_DELETES; i++) {
    if ((await runCommand('iptables', jumpArgs('-C', s))).code !== 0) return;
    await runChecked('iptables', jumpArgs('-D', s), `deleting the ${s.parent} jump to ${s.chain}`);
  }
}

/** Creates or flushes our chain, refills it in order, then makes the parent jump exist exactly once. */
async function install(s: ChainSet): Promise<void> {
  const payload = [`*${s.table}`, `:${s.chain} - [0:0]`, ...ruleLines(s), 'COMMIT', ''].join('\n');
  await runChecked('iptables-restore', ['--noflush', '--wait'], `installing iptables chain ${s.table}/${s.chain}`, payload);
  if (countJumps(await saveTable(s.table), s) === 1) return;
  await deleteJumps(s);
  await runChecked('iptables', jumpArgs('-A', s), `adding the ${s.parent} jump to ${s.chain}`);
}

/** Deletes every jump, then flushes and deletes the chain; a missing chain or jump is not an error. */
async function uninstall(s: ChainSet): Promise<void> {
  await deleteJumps(s);
  if (!hasChain(await saveTable(s.table), s)) return;
  await runChecked('iptables', ['-w', '-t', s.table, '-F', s.chain], `flushing iptables chain ${s.table}/${s.chain}`);
  await runChecked('iptables', ['-w', '-t', s.table, '-X', s.chain], `deleting iptables chain ${s.table}/${s.chain}`);
}

/** flannel's masquerade and forward rules for one node; all methods are serialized per instance. */
export class IptablesRules {
  readonly #masq: MasqueradeSpec | undefined;
  readonly #forwardNetwork: string | undefined;
  #sets: Promise<ChainSet[]> | undefined;
  #tail: Promise<unknown> = Promise.resolve();

  /** Validates and normalizes the CIDRs; throws FLN_ERR_CONFIG_INVALID for bad ones. */
  constructor(opts: IptablesRulesOptions) {
    const m = opts.masq;
    this.#masq = m && { network: cidr(m.network, 'masquerade network'), subnet: cidr(m.subnet, 'masquerade subnet'), randomFully: m.randomFully };
    this.#forwardNetwork = opts.forwardNetwork === undefined ? undefined : cidr(opts.forwardNetwork, 'forward network');
  }

  /** Installs every rule; idempotent, so a restart simply calls it again. */
  ensure(): Promise<void> {
    return this.#serial(async () => {
      for (const s of await this.#chainSets()) await install(s);
    });
  }

  /** Re-applies any chain whose rules, order or single jump changed; true when it repaired something. */
  resync(): Promise<boolean> {
    return this.#serial(async () => {
      let fixed = false;
      for (const s of await this.#chainSets()) {
        if (isIntact(await saveTable(s.table), s)) continue;
        await install(s);
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
        await uninstall(s).catch((e: unknown) => { firstError ??= e; });
      }
      if (firstError !== undefined) throw firstError;
    });
  }

  #chainSets(): Promise<ChainSet[]> {
    this.#sets ??= (async () => {
      const sets: ChainSet[] = [];
      const m = this.#masq;
      if (m) sets.push(masqSet(m.network, m.subnet, m.randomFully && (await iptablesHasRandomFully())));
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
