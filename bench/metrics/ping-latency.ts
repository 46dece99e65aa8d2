// Round-trip latency from ping: a short warm-up (ARP, neighbour and route caches), then N echo
// requests 2 ms apart, every reply's rtt parsed from its own line.
import type { Endpoint } from '../datapaths/catalog.js';
import { execOn, withTimeout } from '../lib/exec.js';
import { percentile, round } from '../lib/stats.js';
import type { LatencyRaw } from '../report/result-types.js';

const RTT = /time=([\d.]+) ms/;

export function parsePingRtts(output: string): number[] {
  return output.split('\n').flatMap((line) => {
    const m = RTT.exec(line);
    return m && /bytes from/.test(line) ? [round(Number(m[1]) * 1000, 1)] : [];
  });
}

export async function pingLatency(client: Endpoint, serverIp: string, count: number): Promise<LatencyRaw> {
  await execOn(client.ns, 'ping', ['-n', '-q', '-c', '5', '-i', '0.01', '-W', '1', serverIp]);
  const r = await withTimeout(
    execOn(client.ns, 'ping', ['-n', '-c', String(count), '-i', '0.002', '-W', '2', serverIp]),
    (count * 0.002 + 15) * 1000, 'ping');
  const rttUs = parsePingRtts(r.stdout);
  if (rttUs.length === 0) throw new Error(`no ping replies: ${(r.stderr || r.stdout).trim().slice(-200)}`);
  return { sent: count, received: rttUs.length, p50Us: round(percentile(rttUs, 50), 1), p99Us: round(percentile(rttUs, 99), 1), rttUs };
}
