// iperf3 between two endpoints: a long-running server (iperf3 -s bound to the server address) and
// one JSON client run per measurement: TCP with 1 or N streams, or a flood of 64-byte UDP datagrams.
import { type SpawnedProcess, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { Endpoint } from '../datapaths/catalog.js';
import { execOn, withTimeout } from '../lib/exec.js';
import type { TcpRaw, UdpRaw } from '../report/result-types.js';

export class IperfServer {
  private proc: SpawnedProcess | undefined;

  constructor(private readonly at: Endpoint) {}

  /** Starts the server if it is not running (again after a failed test) and waits until it listens. */
  async ensure(): Promise<void> {
    if (this.proc && this.proc.child.exitCode === null && this.proc.child.signalCode === null) return;
    const proc = spawnIn(this.at.ns, 'iperf3', ['-s', '-B', this.at.ip, '--forceflush']);
    this.proc = proc;
    const deadline = Date.now() + 10_000;
    while (!proc.output().includes('Server listening')) {
      if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`iperf3 server did not start: ${proc.output().trim()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.ensure();
  }

  async stop(): Promise<void> {
    if (this.proc) await stopProcess(this.proc, 'SIGKILL', 2000);
    this.proc = undefined;
  }
}

interface IperfSum { bits_per_second?: number; bytes?: number; seconds?: number; retransmits?: number; packets?: number; lost_packets?: number; lost_percent?: number }
interface IperfJson { error?: string; end?: { sum_sent?: IperfSum; sum_received?: IperfSum; sum?: IperfSum } }

async function runClient(client: Endpoint, serverIp: string, durationSec: number, extra: readonly string[]): Promise<IperfJson> {
  const args = ['-c', serverIp, '-t', String(durationSec), '-J', '--connect-timeout', '5000', ...extra];
  const r = await withTimeout(execOn(client.ns, 'iperf3', args), (durationSec + 30) * 1000, 'iperf3 client');
  let json: IperfJson;
  try {
    json = JSON.parse(r.stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 exited ${r.code} without JSON: ${(r.stderr || r.stdout).trim().slice(0, 200)}`);
  }
  if (json.error) throw new Error(`iperf3: ${json.error}`);
  if (r.code !== 0) throw new Error(`iperf3 exited ${r.code}`);
  return json;
}

/** TCP throughput as the receiver saw it. */
export async function tcpThroughput(client: Endpoint, serverIp: string, durationSec: number, streams: number): Promise<TcpRaw> {
  const json = await runClient(client, serverIp, durationSec, streams > 1 ? ['-P', String(streams)] : []);
  const rx = json.end?.sum_received;
  if (!rx?.bits_per_second || !rx.bytes || !rx.seconds) throw new Error('iperf3 JSON has no end.sum_received');
  return { bitsPerSecond: rx.bits_per_second, bytes: rx.bytes, seconds: rx.seconds, retransmits: json.end?.sum_sent?.retransmits ?? null };
}

/** 64-byte UDP datagrams sent as fast as iperf3 can (-b 0); what the receiver got, and the loss. */
export async function udpSmallPackets(client: Endpoint, serverIp: string, durationSec: number): Promise<UdpRaw> {
  const json = await runClient(client, serverIp, durationSec, ['-u', '-l', '64', '-b', '0']);
  const rx = json.end?.sum_received ?? json.end?.sum;
  if (rx?.packets === undefined || rx.lost_packets === undefined || !rx.seconds) throw new Error('iperf3 JSON has no UDP receiver figures');
  const received = Math.max(0, rx.packets - rx.lost_packets);
  return {
    packets: rx.packets, lostPackets: rx.lost_packets, lostPercent: rx.lost_percent ?? (rx.packets ? (100 * rx.lost_packets) / rx.packets : 0),
    seconds: rx.seconds, pps: received / rx.seconds,
  };
}
