// A real 3-member etcd cluster for tests, on extra addresses of the underlay bridge (192.0.2.251-253 by
// default), each member with its own data directory. Members can be stopped (SIGKILL) and started again.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../lib/run-command.js';
import { type SpawnedProcess, ipIn, spawnIn, stopProcess } from '../../deploy/local/netns.js';

interface Member {
  readonly name: string;
  readonly ip: string;
  readonly dataDir: string;
  proc: SpawnedProcess | undefined;
  logs: string;
}

export class EtcdCluster {
  readonly members: Member[];

  /** `ns` must hold the bridge `dev` (the underlay switch); `ips` are added to it. */
  constructor(private readonly ns: string, readonly ips: readonly string[] = ['192.0.2.251', '192.0.2.252', '192.0.2.253'], private readonly dev = 'br0') {
    this.members = ips.map((ip, i) => ({ name: `m${i + 1}`, ip, dataDir: mkdtempSync(join(tmpdir(), `flannel-ts-etcd-m${i + 1}-`)), proc: undefined, logs: '' }));
  }

  /** Client URLs of every member, e.g. for --etcd-endpoints. */
  get endpoints(): string[] { return this.members.map((m) => `http://${m.ip}:2379`); }

  /** Adds the addresses and starts every member at once (a new cluster needs its quorum to boot). */
  async start(): Promise<void> {
    for (const m of this.members) await ipIn(this.ns, ['addr', 'replace', `${m.ip}/24`, 'dev', this.dev]);
    for (const m of this.members) this.spawn(m);
    await Promise.all(this.members.map((m) => this.waitHealthy(m)));
  }

  private spawn(m: Member): void {
    const peer = (x: Member): string => `http://${x.ip}:2380`;
    const initial = this.members.map((x) => `${x.name}=${peer(x)}`).join(',');
    m.proc = spawnIn(this.ns, 'etcd', [
      '--name', m.name, '--data-dir', m.dataDir,
      '--listen-client-urls', `http://${m.ip}:2379`, '--advertise-client-urls', `http://${m.ip}:2379`,
      '--listen-peer-urls', peer(m), '--initial-advertise-peer-urls', peer(m),
      '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', `flannel-ts-${this.ns}`,
      '--log-level', 'warn', '--logger', 'zap',
    ]);
  }

  private async waitHealthy(m: Member, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await this.ctl(['endpoint', 'health'], [m.ip])).code === 0) return;
      if (m.proc && m.proc.child.exitCode !== null) break;
      await sleep(200);
    }
    throw new Error(`etcd member ${m.name} (${m.ip}) did not become healthy:\n${this.output()}`);
  }

  /** Runs etcdctl (API v3) against the given member addresses (default: all). */
  ctl(args: readonly string[], ips: readonly string[] = this.ips) {
    const endpoints = ips.map((ip) => `http://${ip}:2379`).join(',');
    return runCommand('ip', ['netns', 'exec', this.ns, 'env', 'ETCDCTL_API=3', 'etcdctl', '--endpoints', endpoints,
      '--dial-timeout', '2s', '--command-timeout', '5s', ...args]);
  }

  async ctlChecked(args: readonly string[], ips?: readonly string[]): Promise<string> {
    const r = await this.ctl(args, ips);
    if (r.code !== 0) throw new Error(`etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** The member that leads the raft group now, from `endpoint status`. */
  async leader(): Promise<Member | undefined> {
    for (const m of this.members.filter((x) => x.proc)) {
      const r = await this.ctl(['endpoint', 'status', '-w', 'json'], [m.ip]);
      if (r.code !== 0) continue;
      // Member ids are uint64 and lose precision as JSON numbers: compare them as etcd printed them.
      const memberId = /"member_id":(\d+)/.exec(r.stdout)?.[1];
      const leader = /"leader":(\d+)/.exec(r.stdout)?.[1];
      if (memberId !== undefined && memberId === leader) return m;
    }
    return undefined;
  }

  /** Kills a member (SIGKILL: no goodbye to its peers), keeping its data. */
  async stop(m: Member): Promise<void> {
    if (!m.proc) return;
    m.logs += m.proc.output();
    await stopProcess(m.proc, 'SIGKILL');
    m.proc = undefined;
  }

  /** Starts a stopped member again on its data; it rejoins the cluster. */
  async restart(m: Member): Promise<void> {
    if (m.proc) return;
    this.spawn(m);
    await this.waitHealthy(m);
  }

  output(): string {
    return this.members.map((m) => `---- ${m.name} (${m.ip}) ----\n${m.logs}${m.proc?.output() ?? ''}`).join('\n');
  }

  async destroy(): Promise<void> {
    for (const m of this.members) await this.stop(m).catch(() => {});
    for (const m of this.members) rmSync(m.dataDir, { recursive: true, force: true });
  }
}
