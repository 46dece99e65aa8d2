// Runs inside a fresh node namespace: builds one data path's backend through the backend registry, as
// flanneld does, applies N "added" peer lease events, reconciles once, removes them again, and prints
// one JSON line with the times. A backend missing from this build prints status "unavailable".
import { pino } from 'pino';
import { createBackend } from '../../backends/registry.js';
import { runCommand } from '../../lib/run-command.js';
import { findExternalInterface } from '../../flanneld/external-interface.js';
import { FlannelError } from '../../lib/errors.js';
import { parseIp4 } from '../../lib/ip.js';
import type { Lease, LeaseAttrs, LeaseEvent } from '../../subnet/lease.js';
import { parseNetworkConfig } from '../../subnet/network-config.js';
import { unknownBackendType } from '../lib/daemon-log.js';

export interface ProgramPeersInput { readonly backend: Record<string, unknown>; readonly peers: number; readonly iface: string }
export type ProgramPeersOutput =
  | { status: 'ok'; setupMs: number; applyMs: number; reconcileMs: number; removeMs: number; routesAfterApply: number }
  | { status: 'unavailable' | 'failed'; reason: string };

const NETWORK = '10.128.0.0/9';
const base = parseIp4('10.128.0.0') as number;

function lease(index: number, attrs: LeaseAttrs): Lease {
  return { subnet: { ip: base + index * 256, prefixLen: 24 }, attrs, etcdLeaseId: '1', expiresAtMs: Date.now() + 86_400_000 };
}

/** A peer's attrs: our own backend type and data, with its own PublicIP, (for vxlan) VtepMAC and (for
 * wireguard) PublicKey: N peers sharing one key would be one WireGuard peer whose allowed IPs move N times. */
function peerAttrs(i: number, own: LeaseAttrs): LeaseAttrs {
  const publicIp = (parseIp4('192.0.2.0') as number) + 10 + (i % 240);
  let backendData = own.backendData;
  if (backendData?.includes('VtepMAC')) {
    const data = JSON.parse(backendData) as Record<string, unknown>;
    const mac = [0x02, 0xfe, (i >> 16) & 255, (i >> 8) & 255, i & 255, 0x01].map((b) => b.toString(16).padStart(2, '0')).join(':');
    backendData = JSON.stringify({ ...data, VtepMAC: mac });
  }
  if (backendData?.includes('PublicKey')) {
    const data = JSON.parse(backendData) as Record<string, unknown>;
    // Any 32 bytes are a Curve25519 public key; this one is the peer's index, distinct from ours.
    const key = Buffer.alloc(32, 0x5a);
    key.writeUInt32LE(i, 0);
    backendData = JSON.stringify({ ...data, PublicKey: key.toString('base64') });
  }
  return { publicIp, ...(own.backendType ? { backendType: own.backendType } : {}), ...(backendData ? { backendData } : {}) };
}

async function overlayRoutes(): Promise<number> {
  const r = await runCommand('ip', ['route', 'show', 'root', NETWORK]);
  return r.stdout.split('\n').filter(Boolean).length;
}

async function run(input: ProgramPeersInput): Promise<ProgramPeersOutput> {
  const log = pino({ level: 'silent' });
  const ext = await findExternalInterface({ iface: [input.iface], ifaceRegex: [], ifaceCanReach: '', publicIp: '' });
  const config = parseNetworkConfig(JSON.stringify({ Network: NETWORK, SubnetLen: 24, Backend: input.backend }), 'bench');
  let t0 = performance.now();
  const backend = createBackend(config.backendType, { ext, config, log });
  const own = await backend.prepare();
  const network = await backend.start(lease(1, own));
  const setupMs = performance.now() - t0;
  const added: LeaseEvent[] = Array.from({ length: input.peers }, (_, i) => ({ kind: 'added', lease: lease(i + 2, peerAttrs(i + 2, own)) }));
  t0 = performance.now();
  await network.apply(added);
  const applyMs = performance.now() - t0;
  const routesAfterApply = await overlayRoutes();
  t0 = performance.now();
  await network.reconcile();
  const reconcileMs = performance.now() - t0;
  t0 = performance.now();
  await network.apply(added.map((e) => ({ kind: 'removed', lease: e.lease })));
  const removeMs = performance.now() - t0;
  await network.close();
  const ms = (v: number): number => Math.round(v * 100) / 100;
  return { status: 'ok', setupMs: ms(setupMs), applyMs: ms(applyMs), reconcileMs: ms(reconcileMs), removeMs: ms(removeMs), routesAfterApply };
}

const input = JSON.parse(process.argv[2] ?? '{}') as ProgramPeersInput;
const output: ProgramPeersOutput = await run(input).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  // Not in the registry (exit 69 for flanneld), or a Backend.Type this build does not know at all.
  const unknownType = unknownBackendType(message, String(input.backend.Type ?? ''));
  const unsupported = (err instanceof FlannelError && err.code === 'FLN_ERR_BACKEND_UNSUPPORTED') || unknownType !== undefined;
  return { status: unsupported ? 'unavailable' : 'failed', reason: unknownType ?? message } as const;
});
process.stdout.write(`${JSON.stringify(output)}\n`);
// A userspace backend may keep workers or devices open; the measurement is over either way.
process.exit(0);
