// Pure subnet choice, as flannel's LocalManager does it: walk [SubnetMin, SubnetMax] in subnet-size
// steps, skip anything overlapping a lease, stop at 100 free candidates and pick one at random.
import { type Cidr4, cidrOverlaps, makeCidr4, sizeOf } from '../lib/ip.js';
import { type Cidr6, cidr6Overlaps, makeCidr6, sizeOf6 } from '../lib/ip6.js';
import type { Ipv4Pool, Ipv6Pool } from './network-config.js';

export const MAX_CANDIDATES = 100;

export interface PoolUsage {
  /** Subnets of SubnetLen between SubnetMin and SubnetMax. */
  readonly total: number;
  /** How many of those overlap an existing lease. */
  readonly taken: number;
}

/** Lists up to `limit` free subnets in allocation order. */
export function freeSubnets(cfg: Ipv4Pool, leased: readonly Cidr4[], limit = MAX_CANDIDATES): Cidr4[] {
  const out: Cidr4[] = [];
  const step = sizeOf(cfg.subnetLen);
  // Plain (not uint32) arithmetic, so the walk ends at 255.255.255.255 instead of wrapping to 0.
  for (let ip = makeCidr4(cfg.subnetMin, cfg.subnetLen).ip; ip <= cfg.subnetMax && out.length < limit; ip += step) {
    const c: Cidr4 = { ip, prefixLen: cfg.subnetLen };
    if (!leased.some((l) => cidrOverlaps(l, c))) out.push(c);
  }
  return out;
}

/** Picks a free subnet uniformly at random among the first 100; undefined when the pool is exhausted. */
export function pickFreeSubnet(cfg: Ipv4Pool, leased: readonly Cidr4[], random: () => number = Math.random): Cidr4 | undefined {
  const free = freeSubnets(cfg, leased);
  return free[Math.floor(random() * free.length)];
}

/** True when the subnet may be used under this config: right length, aligned and inside [min, max]. */
export function isCompatible(cfg: Ipv4Pool, subnet: Cidr4): boolean {
  return subnet.prefixLen === cfg.subnetLen && subnet.ip >= cfg.subnetMin && subnet.ip <= cfg.subnetMax;
}

export function poolUsage(cfg: Ipv4Pool, leased: readonly Cidr4[]): PoolUsage {
  const step = sizeOf(cfg.subnetLen);
  const total = cfg.subnetMax >= cfg.subnetMin ? Math.floor((cfg.subnetMax - cfg.subnetMin) / step) + 1 : 0;
  const free = freeSubnets(cfg, leased, Number.MAX_SAFE_INTEGER).length;
  return { total, taken: total - free };
}

// The IPv6 pool (dual-stack), with the same rules: walk [IPv6SubnetMin, IPv6SubnetMax] in subnet-size
// steps, skip anything overlapping a leased IPv6 subnet, stop at 100 free candidates, pick one at random.

/** Lists up to `limit` free IPv6 subnets in allocation order. */
export function freeSubnets6(pool: Ipv6Pool, leased: readonly Cidr6[], limit = MAX_CANDIDATES): Cidr6[] {
  const out: Cidr6[] = [];
  const step = sizeOf6(pool.subnetLen);
  for (let ip = makeCidr6(pool.subnetMin, pool.subnetLen).ip; ip <= pool.subnetMax && out.length < limit; ip += step) {
    const c: Cidr6 = { ip, prefixLen: pool.subnetLen };
    if (!leased.some((l) => cidr6Overlaps(l, c))) out.push(c);
  }
  return out;
}

/** Picks a free IPv6 subnet uniformly at random among the first 100; undefined when the pool is exhausted. */
export function pickFreeSubnet6(pool: Ipv6Pool, leased: readonly Cidr6[], random: () => number = Math.random): Cidr6 | undefined {
  const free = freeSubnets6(pool, leased);
  return free[Math.floor(random() * free.length)];
}

/** flannel's isIPv6SubnetConfigCompat: right length and inside [IPv6SubnetMin, IPv6SubnetMax]. */
export function isCompatible6(pool: Ipv6Pool, subnet: Cidr6): boolean {
  return subnet.prefixLen === pool.subnetLen && subnet.ip >= pool.subnetMin && subnet.ip <= pool.subnetMax;
}

/** Like poolUsage, for the IPv6 pool (bigint: a /64 pool of /80s has 2^16 subnets, a /48 of /64s 2^16, …). */
export interface PoolUsage6 {
  readonly total: bigint;
  readonly taken: bigint;
}

/** Counts are exact only for pools small enough to walk; called when the pool is exhausted (then it is small). */
export function poolUsage6(pool: Ipv6Pool, leased: readonly Cidr6[]): PoolUsage6 {
  const step = sizeOf6(pool.subnetLen);
  const total = pool.subnetMax >= pool.subnetMin ? (pool.subnetMax - pool.subnetMin) / step + 1n : 0n;
  const free = BigInt(freeSubnets6(pool, leased, Number.MAX_SAFE_INTEGER).length);
  return { total, taken: total - free };
}
