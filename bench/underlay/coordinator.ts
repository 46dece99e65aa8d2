// Two-host mode's rendezvous: host b announces itself with a heartbeat in etcd; host a writes numbered
// steps (set up a data path, connect it, report daemon usage, tear down, done) and waits for b's
// acknowledgement of each. Polling etcd keys keeps it simple and robust to either host starting first.
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import type { DaemonUsage } from '../datapaths/catalog.js';
import type { DataPathId } from '../report/result-types.js';

export const BENCH_ROOT = '/flannel-ts-bench';
const HELLO = `${BENCH_ROOT}/coord/hello`;
const STEP = `${BENCH_ROOT}/coord/step`;
const ACK = `${BENCH_ROOT}/coord/ack`;

/** What one host tells the other about its half of a data path. */
export interface HalfInfo {
  readonly hostIp: string;
  /** Where the other host sends its traffic: the pod (or, for raw veth, the host itself). */
  readonly ip: string;
  readonly subnet?: string;
  readonly vtepMac?: string;
}

export type Action = 'setup' | 'connect' | 'iperf' | 'usage' | 'teardown' | 'done';

export interface Step {
  readonly run: string;
  readonly seq: number;
  readonly action: Action;
  readonly dp?: DataPathId;
  readonly peer?: HalfInfo;
  readonly restart?: boolean;
}

export interface Ack {
  readonly run: string;
  readonly seq: number;
  readonly ok: boolean;
  readonly error?: string;
  readonly unavailable?: boolean;
  readonly info?: HalfInfo;
  readonly usage?: DaemonUsage;
}

/** Host b stopped answering: the run cannot go on. */
export class PeerGoneError extends Error {
  override readonly name = 'PeerGoneError';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Coordinator {
  readonly client: Etcd3;
  private seq = 0;

  constructor(etcd: string, private run = randomBytes(6).toString('hex')) {
    this.client = new Etcd3({ hosts: etcd });
  }

  private async read<T>(key: string): Promise<T | undefined> {
    const text = await this.client.get(key).string();
    return text ? (JSON.parse(text) as T) : undefined;
  }

  /** Host b: heartbeats its run id until `stop` resolves. */
  async announce(stop: Promise<unknown>): Promise<void> {
    let done = false;
    void stop.finally(() => { done = true; });
    while (!done) {
      await this.client.put(HELLO).value(JSON.stringify({ run: this.run, at: Date.now() }));
      await Promise.race([sleep(2000), stop]);
    }
  }

  /** Host b: the next step of our run after `afterSeq`. */
  async nextStep(afterSeq: number, timeoutMs: number): Promise<Step> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const step = await this.read<Step>(STEP);
      if (step && step.run === this.run && step.seq > afterSeq) return step;
      if (Date.now() > deadline) throw new Error(`host a sent nothing for ${Math.round(timeoutMs / 1000)} s`);
      await sleep(50);
    }
  }

  async ack(a: Omit<Ack, 'run'>): Promise<void> {
    await this.client.put(ACK).value(JSON.stringify({ ...a, run: this.run }));
  }

  /** Host a: waits for a live host b (a heartbeat younger than 10 s) and adopts its run id. */
  async findPeer(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hello = await this.read<{ run: string; at: number }>(HELLO);
      if (hello && Date.now() - hello.at < 10_000) {
        this.run = hello.run;
        return;
      }
      if (Date.now() > deadline) throw new Error(`no host b announced itself in etcd within ${Math.round(timeoutMs / 1000)} s`);
      await sleep(200);
    }
  }

  /** Host a: sends a step and waits for b's acknowledgement. */
  async request(step: Omit<Step, 'run' | 'seq'>, timeoutMs = 120_000): Promise<Ack> {
    const seq = ++this.seq;
    await this.client.put(STEP).value(JSON.stringify({ ...step, run: this.run, seq }));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ack = await this.read<Ack>(ACK);
      if (ack && ack.run === this.run && ack.seq === seq) return ack;
      if (Date.now() > deadline) throw new PeerGoneError(`host b did not answer step ${step.action} within ${Math.round(timeoutMs / 1000)} s`);
      await sleep(20);
    }
  }

  /** Host a, at the end: removes every key of the benchmark (coordination, configs, leases). */
  async clear(): Promise<void> {
    await this.client.delete().prefix(`${BENCH_ROOT}/`);
  }

  close(): void {
    this.client.close();
  }
}
