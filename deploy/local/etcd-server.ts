// A real single-member etcd (Debian's etcd-server), started by us in a namespace or on loopback,
// with its own data directory. It can be stopped and started again on the same data.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../lib/run-command.js';
import { type SpawnedProcess, spawnIn, stopProcess } from './netns.js';

export interface EtcdServerOptions {
  /** Namespace to run in; undefined runs in the current one. */
  readonly ns?: string;
  /** Addresses to serve clients on, e.g. ['192.0.2.254', '127.0.0.1']. */
  readonly listenIps: readonly string[];
  readonly clientPort?: number;
  readonly peerPort?: number;
  /** Mutual TLS: server cert, key and the CA that signs client certs. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
}

export class EtcdServer {
  readonly dataDir: string;
  private proc: SpawnedProcess | undefined;
  private logs = '';

  constructor(private readonly opts: EtcdServerOptions) {
    this.dataDir = mkdtempSync(join(tmpdir(), 'flannel-ts-etcd-'));
  }

  get clientPort(): number { return this.opts.clientPort ?? 2379; }
  private get scheme(): string { return this.opts.tls ? 'https' : 'http'; }

  /** Client URLs, first address first. */
  endpoints(ips: readonly string[] = this.opts.listenIps): string[] {
    return ips.map((ip) => `${this.scheme}://${ip}:${this.clientPort}`);
  }

  /** Starts etcd (optionally on a subset of addresses) and waits until it answers. */
  async start(listenIps: readonly string[] = this.opts.listenIps): Promise<void> {
    if (this.proc) throw new Error('etcd is already running');
    const peer = `http://127.0.0.1:${this.opts.peerPort ?? 2380}`;
    const args = [
      '--name', 'default', '--data-dir', this.dataDir,
      '--listen-client-urls', this.endpoints(listenIps).join(','),
      '--advertise-client-urls', this.endpoints(listenIps).join(','),
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `default=${peer}`, '--log-level', 'warn', '--logger', 'zap',
    ];
    if (this.opts.tls) {
      args.push('--cert-file', this.opts.tls.certFile, '--key-file', this.opts.tls.keyFile,
        '--trusted-ca-file', this.opts.tls.caFile, '--client-cert-auth');
    }
    this.proc = spawnIn(this.opts.ns, 'etcd', args);
    await this.waitHealthy(listenIps[0] as string);
  }

  private async waitHealthy(ip: string): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const r = await this.ctl(['endpoint', 'health'], ip);
      if (r.code === 0) return;
      if (this.proc && this.proc.child.exitCode !== null) break;
      await sleep(100);
    }
    throw new Error(`etcd did not become healthy:\n${this.proc?.output() ?? ''}`);
  }

  /** Runs etcdctl (API v3) against this server. */
  ctl(args: readonly string[], ip: string = this.opts.listenIps[0] as string) {
    const base = ['--endpoints', `${this.scheme}://${ip}:${this.clientPort}`, '--dial-timeout', '2s', '--command-timeout', '5s'];
    if (this.opts.tls) base.push('--cacert', this.opts.tls.caFile, '--cert', this.opts.tls.certFile, '--key', this.opts.tls.keyFile);
    const full = ['etcdctl', ...base, ...args];
    const env = ['env', 'ETCDCTL_API=3'];
    return this.opts.ns ? runCommand('ip', ['netns', 'exec', this.opts.ns, ...env, ...full]) : runCommand(env[0] as string, [...env.slice(1), ...full]);
  }

  async ctlChecked(args: readonly string[], ip?: string): Promise<string> {
    const r = await this.ctl(args, ip);
    if (r.code !== 0) throw new Error(`etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  async put(key: string, value: string): Promise<void> { await this.ctlChecked(['put', key, value]); }

  async get(key: string): Promise<string | undefined> {
    const out = await this.ctlChecked(['get', key, '--print-value-only']);
    return out === '' ? undefined : out.replace(/\n$/, '');
  }

  /** Stops the server (SIGKILL when `hard`), keeping its data. */
  async stop(hard = false): Promise<void> {
    if (!this.proc) return;
    this.logs += this.proc.output();
    await stopProcess(this.proc, hard ? 'SIGKILL' : 'SIGTERM');
    this.proc = undefined;
  }

  output(): string { return this.logs + (this.proc?.output() ?? ''); }

  /** Stops the server and deletes its data. */
  async destroy(): Promise<void> {
    await this.stop(true);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
