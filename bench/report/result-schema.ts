// Checks that a parsed result file has the shape of BenchResult (result-types.ts), field by field.
// Returns every problem found as "path: what is wrong"; an empty list means the file is valid.
import {
  ALL_DATAPATH_IDS, CONTROL_METRICS, DATAPATH_METRICS, LATER_SUMMARY_KEYS, SCHEMA_ID, STATUSES, SUMMARY_KEYS,
} from './result-types.js';

type Obj = Record<string, unknown>;

class Checker {
  readonly problems: string[] = [];

  fail(path: string, what: string): void { this.problems.push(`${path}: ${what}`); }

  obj(v: unknown, path: string): Obj | undefined {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Obj;
    this.fail(path, 'expected an object');
    return undefined;
  }

  arr(v: unknown, path: string): unknown[] {
    if (Array.isArray(v)) return v;
    this.fail(path, 'expected an array');
    return [];
  }

  str(v: unknown, path: string, allowed?: readonly string[]): void {
    if (typeof v !== 'string') this.fail(path, 'expected a string');
    else if (allowed && !allowed.includes(v)) this.fail(path, `${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
  }

  num(v: unknown, path: string, nullable = false): void {
    if (nullable && v === null) return;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(path, `expected a finite number${nullable ? ' or null' : ''}`);
  }

  bool(v: unknown, path: string): void {
    if (typeof v !== 'boolean') this.fail(path, 'expected a boolean');
  }

  stat(v: unknown, path: string): void {
    if (v === null) return;
    const o = this.obj(v, path);
    if (!o) return;
    for (const k of ['median', 'min', 'max', 'n']) this.num(o[k], `${path}.${k}`);
    if (typeof o.min === 'number' && typeof o.max === 'number' && typeof o.median === 'number' && !(o.min <= o.median && o.median <= o.max)) {
      this.fail(path, 'expected min ≤ median ≤ max');
    }
  }
}

function checkSample(c: Checker, v: unknown, path: string): void {
  const s = c.obj(v, path);
  if (!s) return;
  c.num(s.repeat, `${path}.repeat`);
  c.str(s.metric, `${path}.metric`, DATAPATH_METRICS);
  c.num(s.value, `${path}.value`, true);
  c.num(s.daemonCpuSec, `${path}.daemonCpuSec`, true);
  // Added after the first results were committed: optional, so those files stay valid.
  if (s.machineCpuSec !== undefined) c.num(s.machineCpuSec, `${path}.machineCpuSec`, true);
  if (s.error !== undefined) c.str(s.error, `${path}.error`);
  if (s.value !== null && s.tcp === undefined && s.udp === undefined && s.latency === undefined && s.rpc === undefined && s.idle === undefined) {
    c.fail(path, 'a sample with a value needs its raw figures (tcp, udp, latency, rpc or idle)');
  }
  if (s.rpc !== undefined) for (const k of ['observations', 'dropped', 'p50Us', 'p99Us', 'seconds']) c.num(c.obj(s.rpc, `${path}.rpc`)?.[k], `${path}.rpc.${k}`);
  if (s.idle !== undefined) for (const k of ['seconds', 'daemons', 'cpuPctPerDaemon']) c.num(c.obj(s.idle, `${path}.idle`)?.[k], `${path}.idle.${k}`);
  if (s.tcp !== undefined) for (const k of ['bitsPerSecond', 'bytes', 'seconds']) c.num(c.obj(s.tcp, `${path}.tcp`)?.[k], `${path}.tcp.${k}`);
  if (s.udp !== undefined) for (const k of ['packets', 'lostPackets', 'lostPercent', 'seconds', 'pps']) c.num(c.obj(s.udp, `${path}.udp`)?.[k], `${path}.udp.${k}`);
  if (s.latency !== undefined) {
    const l = c.obj(s.latency, `${path}.latency`);
    for (const k of ['sent', 'received', 'p50Us', 'p99Us']) c.num(l?.[k], `${path}.latency.${k}`);
    c.arr(l?.rttUs, `${path}.latency.rttUs`).forEach((x, i) => c.num(x, `${path}.latency.rttUs[${i}]`));
  }
}

function checkDataPath(c: Checker, v: unknown, path: string): void {
  const d = c.obj(v, path);
  if (!d) return;
  c.str(d.id, `${path}.id`, ALL_DATAPATH_IDS);
  c.str(d.label, `${path}.label`);
  c.bool(d.hasDaemon, `${path}.hasDaemon`);
  c.str(d.status, `${path}.status`, STATUSES);
  if (d.status !== 'measured') c.str(d.reason, `${path}.reason`);
  c.arr(d.samples, `${path}.samples`).forEach((s, i) => checkSample(c, s, `${path}.samples[${i}]`));
  c.arr(d.usage, `${path}.usage`).forEach((u, i) => {
    const o = c.obj(u, `${path}.usage[${i}]`);
    c.num(o?.repeat, `${path}.usage[${i}].repeat`);
    c.num(o?.cpuSecPerGB, `${path}.usage[${i}].cpuSecPerGB`, true);
    c.num(o?.peakRssMB, `${path}.usage[${i}].peakRssMB`, true);
    if (o?.machineCpuSecPerGB !== undefined) c.num(o.machineCpuSecPerGB, `${path}.usage[${i}].machineCpuSecPerGB`, true);
  });
  const summary = c.obj(d.summary, `${path}.summary`);
  for (const k of SUMMARY_KEYS) {
    if (summary && (summary[k] !== undefined || !LATER_SUMMARY_KEYS.has(k))) c.stat(summary[k], `${path}.summary.${k}`);
  }
}

function checkControlPlane(c: Checker, v: unknown): void {
  const cp = c.obj(v, 'controlPlane');
  if (!cp) return;
  c.arr(cp.programPeers, 'controlPlane.programPeers').forEach((e, i) => {
    const p = `controlPlane.programPeers[${i}]`;
    const o = c.obj(e, p);
    c.str(o?.datapath, `${p}.datapath`, ALL_DATAPATH_IDS);
    c.str(o?.status, `${p}.status`, STATUSES);
    c.arr(o?.samples, `${p}.samples`).forEach((s, j) => {
      const so = c.obj(s, `${p}.samples[${j}]`);
      for (const k of ['repeat', 'peers', 'setupMs', 'applyMs', 'reconcileMs', 'removeMs', 'routesAfterApply']) c.num(so?.[k], `${p}.samples[${j}].${k}`);
    });
    c.arr(o?.summary, `${p}.summary`).forEach((s, j) => {
      const so = c.obj(s, `${p}.summary[${j}]`);
      c.num(so?.peers, `${p}.summary[${j}].peers`);
      for (const k of ['applyMs', 'perPeerUs', 'reconcileMs', 'removeMs']) c.stat(so?.[k], `${p}.summary[${j}].${k}`);
    });
  });
  c.arr(cp.leaseToPacket, 'controlPlane.leaseToPacket').forEach((e, i) => {
    const p = `controlPlane.leaseToPacket[${i}]`;
    const o = c.obj(e, p);
    c.str(o?.datapath, `${p}.datapath`, ALL_DATAPATH_IDS);
    c.str(o?.status, `${p}.status`, STATUSES);
    c.arr(o?.samples, `${p}.samples`).forEach((s, j) => c.num(c.obj(s, `${p}.samples[${j}]`)?.ms, `${p}.samples[${j}].ms`, true));
    c.stat(o?.summary, `${p}.summary`);
  });
  if (cp.kubeNodes === undefined) return;
  const k = c.obj(cp.kubeNodes, 'controlPlane.kubeNodes');
  c.str(k?.status, 'controlPlane.kubeNodes.status', STATUSES);
  c.arr(k?.samples, 'controlPlane.kubeNodes.samples').forEach((s, j) => {
    const so = c.obj(s, `controlPlane.kubeNodes.samples[${j}]`);
    for (const f of ['repeat', 'nodes', 'createMs', 'routedMs', 'removedMs']) c.num(so?.[f], `controlPlane.kubeNodes.samples[${j}].${f}`);
  });
  c.arr(k?.summary, 'controlPlane.kubeNodes.summary').forEach((s, j) => {
    const so = c.obj(s, `controlPlane.kubeNodes.summary[${j}]`);
    c.num(so?.nodes, `controlPlane.kubeNodes.summary[${j}].nodes`);
    for (const f of ['createMs', 'routedMs', 'perNodeUs', 'removedMs']) c.stat(so?.[f], `controlPlane.kubeNodes.summary[${j}].${f}`);
  });
}

export function validateResult(v: unknown): string[] {
  const c = new Checker();
  const r = c.obj(v, '(root)');
  if (!r) return c.problems;
  if (r.schema !== SCHEMA_ID) c.fail('schema', `expected ${SCHEMA_ID}`);
  for (const k of ['startedAt', 'finishedAt']) c.str(r[k], k);
  c.num(r.elapsedSec, 'elapsedSec');
  const env = c.obj(r.environment, 'environment');
  if (env) {
    for (const k of ['kernel', 'cpuModel', 'nodeVersion', 'iperf3Version', 'gitCommit', 'hostname']) c.str(env[k], `environment.${k}`);
    for (const k of ['cores', 'memTotalMB']) c.num(env[k], `environment.${k}`);
    c.bool(env.gitDirty, 'environment.gitDirty');
    for (const k of ['loadAvgStart', 'loadAvgEnd']) c.arr(env[k], `environment.${k}`).forEach((x, i) => c.num(x, `environment.${k}[${i}]`));
    if (env.threadWakeupUs !== undefined) {
      const w = c.obj(env.threadWakeupUs, 'environment.threadWakeupUs');
      if (w) for (const k of ['sameCpu', 'crossCpu']) c.num(w[k], `environment.threadWakeupUs.${k}`);
    }
  }
  const o = c.obj(r.options, 'options');
  if (o) {
    c.str(o.mode, 'options.mode', ['local', 'underlay']);
    c.arr(o.datapaths, 'options.datapaths').forEach((d, i) => c.str(d, `options.datapaths[${i}]`, ALL_DATAPATH_IDS));
    c.arr(o.metrics, 'options.metrics').forEach((m, i) => c.str(m, `options.metrics[${i}]`, [...DATAPATH_METRICS, ...CONTROL_METRICS]));
    for (const k of ['durationSec', 'repeats', 'pings']) c.num(o[k], `options.${k}`);
    if (o.rpcRate !== undefined) c.num(o.rpcRate, 'options.rpcRate');
    c.arr(o.peers, 'options.peers').forEach((x, i) => c.num(x, `options.peers[${i}]`));
    c.bool(o.quick, 'options.quick');
  }
  c.arr(r.datapaths, 'datapaths').forEach((d, i) => checkDataPath(c, d, `datapaths[${i}]`));
  checkControlPlane(c, r.controlPlane);
  c.arr(r.notes, 'notes').forEach((n, i) => c.str(n, `notes[${i}]`));
  return c.problems;
}
