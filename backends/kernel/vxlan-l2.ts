// The L2 state a VXLAN VTEP needs per peer in the kernel: a permanent neighbour (peer subnet's
// network address → peer VtepMAC) and, for a kernel VXLAN device, an FDB entry (VtepMAC → PublicIP).
// sync() diffs the kernel against the desired set and fixes both ways, batched.
import { FlannelError } from '../../lib/errors.js';
import { ipBatch } from './kernel-routes.js';
import { runCommand } from '../../lib/run-command.js';
import { canonicalIp6Text } from '../../lib/ip6.js';

export interface L2Peer {
  /** The peer subnet's network address, the gateway of its route. */
  readonly gateway: string;
  readonly mac: string;
  readonly publicIp: string;
}

export interface L2SyncResult { readonly added: number; readonly removed: number; readonly failed: number }

async function listJson<T>(tool: 'ip' | 'bridge', args: string[]): Promise<T[]> {
  const r = await runCommand(tool, ['-j', ...args]);
  if (r.code !== 0) throw new FlannelError('FLN_ERR_KERNEL_OP', `${tool} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout || '[]') as T[];
}


/** Makes the neighbours (and with `withFdb`, the FDB entries) on `dev` exactly the desired ones. */
export async function syncVxlanL2(dev: string, peers: readonly L2Peer[], withFdb: boolean): Promise<L2SyncResult> {
  const neigh = (await listJson<{ dst: string; lladdr?: string; state?: string[] }>('ip', ['neigh', 'show', 'dev', dev]))
    .map((n) => ({ ...n, dst: canonicalIp6Text(n.dst) }));
  const want = new Map(peers.map((p) => [p.gateway, p]));
  const ipCmds: string[] = [];
  let added = 0;
  let removed = 0;
  for (const n of neigh) {
    if (!n.state?.includes('PERMANENT') || want.get(n.dst)?.mac === n.lladdr) continue;
    if (!want.has(n.dst)) { ipCmds.push(`neigh del ${n.dst} dev ${dev}`); removed++; }
  }
  for (const p of peers) {
    if (neigh.some((n) => n.dst === p.gateway && n.lladdr === p.mac && n.state?.includes('PERMANENT'))) continue;
    ipCmds.push(`neigh replace ${p.gateway} lladdr ${p.mac} dev ${dev} nud permanent`);
    added++;
  }
  let failed = (await ipBatch(ipCmds)).failed.length;
  if (withFdb) {
    const fdb = (await listJson<{ mac: string; dst?: string; state?: string }>('bridge', ['fdb', 'show', 'dev', dev]))
      .filter((e) => e.dst).map((e) => ({ ...e, dst: canonicalIp6Text(e.dst as string) }));
    const wantMac = new Map(peers.map((p) => [p.mac, p]));
    const brCmds: string[] = [];
    for (const e of fdb) {
      if (wantMac.get(e.mac)?.publicIp === e.dst) continue;
      brCmds.push(`fdb del ${e.mac} dev ${dev} dst ${e.dst} self`);
      removed++;
    }
    for (const p of peers) {
      if (fdb.some((e) => e.mac === p.mac && e.dst === p.publicIp)) continue;
      brCmds.push(`fdb replace ${p.mac} dev ${dev} dst ${p.publicIp} self permanent`);
      added++;
    }
    failed += (await ipBatch(brCmds, 'bridge')).failed.length;
  }
  return { added, removed, failed };
}
