// Kernel IPv4 and IPv6 routes through iproute2: many changes go through one `ip -batch` process, never one
// process per route. Routes we install carry our own protocol number, so that we can list exactly
// the routes we own and remove the stale ones (flannel cannot: its issue #2554).
import { FlannelError } from '../../lib/errors.js';
import { runCommand } from '../../lib/run-command.js';
import { canonicalIp6Text } from '../../lib/ip6.js';

/** rtnetlink protocol number marking flannel-ts routes (unassigned in /etc/iproute2/rt_protos). */
export const ROUTE_PROTOCOL = 241;

export interface Route {
  /** Destination CIDR, e.g. "10.244.3.0/24". */
  readonly dst: string;
  /** Next hop. */
  readonly via: string;
  readonly dev: string;
  /** Next hop is on the link even though no address of ours covers it (vxlan's "onlink"). */
  readonly onlink?: boolean;
}

export interface BatchResult {
  readonly failed: ReadonlyArray<{ readonly command: string; readonly error: string }>;
}

export function sameRoute(a: Route, b: Route): boolean {
  return a.dst === b.dst && a.via === b.via && a.dev === b.dev && Boolean(a.onlink) === Boolean(b.onlink);
}

export function routeSpec(r: Route): string {
  return `${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? ' onlink' : ''} proto ${ROUTE_PROTOCOL}`;
}

/**
 * Runs iproute2 commands (without the leading "ip" or "bridge") in one process. `-force` keeps going past a
 * failing line; the failures come back per command instead of aborting the whole batch.
 */
export async function ipBatch(commands: readonly string[], tool: 'ip' | 'bridge' = 'ip'): Promise<BatchResult> {
  if (commands.length === 0) return { failed: [] };
  const r = await runCommand(tool, ['-force', '-batch', '-'], `${commands.join('\n')}\n`);
  if (r.code === 0) return { failed: [] };
  const failed: Array<{ command: string; error: string }> = [];
  let pending: string[] = [];
  for (const line of r.stderr.split('\n')) {
    const m = /^Command failed -:(\d+)/.exec(line);
    if (!m) {
      if (line.trim()) pending.push(line.trim());
      continue;
    }
    failed.push({ command: commands[Number(m[1]) - 1] ?? `line ${m[1]}`, error: pending.join('; ') || 'unknown error' });
    pending = [];
  }
  if (failed.length === 0) {
    throw new FlannelError('FLN_ERR_KERNEL_OP', `${tool} -batch exited ${r.code}: ${r.stderr.trim()}`);
  }
  return { failed };
}

interface IpRouteJson { dst?: string; gateway?: string; dev?: string; flags?: string[] }

/**
 * Lists the main-table routes of a family carrying our protocol number. IPv6 addresses come back in
 * lib/ip6.ts's canonical text, so that they compare equal to routes built with formatCidr6/formatIp6.
 */
export async function listOwnRoutes(family: 4 | 6 = 4): Promise<Route[]> {
  const r = await runCommand('ip', [`-${family}`, '-j', 'route', 'show', 'table', 'main', 'proto', String(ROUTE_PROTOCOL)]);
  if (r.code !== 0) throw new FlannelError('FLN_ERR_KERNEL_OP', `listing IPv${family} routes failed: ${r.stderr.trim()}`);
  const rows = JSON.parse(r.stdout || '[]') as IpRouteJson[];
  return rows.flatMap((row) => {
    if (!row.dst || !row.gateway || !row.dev) return [];
    const [addr, len] = row.dst.split('/') as [string, string | undefined];
    const dst = family === 6 ? `${canonicalIp6Text(addr)}/${len ?? 128}` : `${addr}/${len ?? 32}`;
    const via = family === 6 ? canonicalIp6Text(row.gateway) : row.gateway;
    return [{ dst, via, dev: row.dev, onlink: row.flags?.includes('onlink') ?? false }];
  });
}

