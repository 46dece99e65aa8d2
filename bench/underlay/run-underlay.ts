// Underlay mode: the same measurements between two real hosts over a given interface. Host b serves
// (sets up its half of each data path, runs the iperf3 server, reports its daemon's usage); host a
// drives the steps through etcd, measures, and writes the results. Because both halves live on the
// hosts themselves, each data path is set up and torn down inside its (repeat, data path) slot.
import type { BenchOptions, UnderlayOptions } from '../cli/options.js';
import type { Progress } from '../cli/progress.js';
import { onTeardown } from '../cli/teardown.js';
import { programPeers, programPeersSteps } from '../control-plane/program-peers.js';
import { dataPathDef, type ReadyPath, UnavailableError } from '../datapaths/catalog.js';
import { errorText, execOn } from '../lib/exec.js';
import { maxPeakRssMB, totalCpuSeconds } from '../metrics/daemon-usage.js';
import { IperfServer } from '../metrics/iperf.js';
import type { LeaseToPacketResult, ProgramPeersResult } from '../report/result-types.js';
import { measureRepeat, type PathUnderTest } from '../runner/measure-datapaths.js';
import type { RunOutput } from '../runner/run-local.js';
import { Coordinator, PeerGoneError } from './coordinator.js';
import { checkHostIsClean, type Half, netPrefix, setupHalf } from './host-half.js';

export async function runUnderlay(o: BenchOptions, u: UnderlayOptions, progress: Progress): Promise<RunOutput | undefined> {
  await checkHostIsClean();
  if ((await execOn(undefined, 'ping', ['-n', '-q', '-c', '3', '-i', '0.2', '-W', '2', '-I', u.iface, u.peer])).code !== 0) {
    throw new Error(`--peer ${u.peer} does not answer ping on ${u.iface}`);
  }
  const coord = new Coordinator(u.etcd);
  onTeardown('etcd client', async () => coord.close());
  return u.role === 'b' ? serve(coord, u, progress) : drive(coord, o, u, progress);
}

/** Host b: obeys steps until "done". */
async function serve(coord: Coordinator, u: UnderlayOptions, progress: Progress): Promise<undefined> {
  let half: Half | undefined;
  let iperf: IperfServer | undefined;
  const stopAll = async (): Promise<void> => {
    await iperf?.stop();
    await half?.teardown();
    iperf = undefined;
    half = undefined;
  };
  onTeardown('host b half', stopAll);
  let firstStep!: () => void;
  const started = new Promise<void>((r) => { firstStep = r; });
  void coord.announce(started);
  progress.log(`host b: waiting for host a (etcd ${u.etcd})...`);
  let seq = 0;
  for (;;) {
    const step = await coord.nextStep(seq, 15 * 60_000);
    firstStep();
    seq = step.seq;
    try {
      switch (step.action) {
        case 'setup':
          await stopAll();
          half = await setupHalf(dataPathDef(step.dp ?? 'raw'), u, 'b');
          progress.log(`host b: set up ${step.dp}`);
          await coord.ack({ seq, ok: true, info: half.info });
          break;
        case 'connect':
          if (!half || !step.peer) throw new Error('connect before setup');
          checkPeer(step.peer.hostIp, u.peer);
          await half.connect(step.peer);
          iperf = new IperfServer(half.endpoint);
          await iperf.ensure();
          await coord.ack({ seq, ok: true });
          break;
        case 'iperf':
          if (!iperf) throw new Error('no iperf3 server: connect first');
          await (step.restart ? iperf.restart() : iperf.ensure());
          await coord.ack({ seq, ok: true });
          break;
        case 'usage': {
          const pids = half?.daemonPids() ?? [];
          await coord.ack({ seq, ok: true, usage: { cpuSec: totalCpuSeconds(pids), peakRssMB: maxPeakRssMB(pids) } });
          break;
        }
        case 'teardown':
          await stopAll();
          await coord.ack({ seq, ok: true });
          break;
        case 'done':
          await stopAll();
          await coord.ack({ seq, ok: true });
          progress.log('host b: done');
          return undefined;
      }
    } catch (err) {
      await coord.ack({ seq, ok: false, error: errorText(err), unavailable: err instanceof UnavailableError });
    }
  }
}

/** Host a: for each repeat and data path, both halves up, measure, both halves down. */
async function drive(coord: Coordinator, o: BenchOptions, u: UnderlayOptions, progress: Progress): Promise<RunOutput> {
  progress.log(`host a: looking for host b in etcd ${u.etcd}...`);
  await coord.findPeer(10 * 60_000);
  onTeardown('host b', () => coord.request({ action: 'done' }, 30_000).then(() => coord.clear()));
  const paths: PathUnderTest[] = o.datapaths.map((id) => {
    const def = dataPathDef(id);
    return def.localOnly
      ? { def, status: 'skipped', reason: `local mode only: ${def.localOnly}`, samples: [], usage: [] }
      : { def, status: 'measured', samples: [], usage: [] };
  });
  for (const p of paths) {
    if (p.def.backend) await coord.client.put(`${netPrefix(p.def)}/config`).value(JSON.stringify({ Network: '10.244.0.0/16', Backend: p.def.backend }));
  }
  progress.addSteps(o.repeats * paths.filter((p) => p.status === 'measured').length * o.metrics.length);
  for (let r = 1; r <= o.repeats; r++) {
    for (const p of paths) {
      if (p.status !== 'measured') continue;
      progress.start(`repeat ${r}/${o.repeats} · setting up ${p.def.id} on both hosts`);
      let half: Half | undefined;
      let peerGone = false;
      try {
        half = await setupHalf(p.def, u, 'a');
        const remote = await coord.request({ action: 'setup', dp: p.def.id });
        if (!remote.ok || !remote.info) throw remote.unavailable ? new UnavailableError(`host b: ${remote.error}`) : new Error(`host b: ${remote.error}`);
        checkPeer(remote.info.hostIp, u.peer);
        await half.connect(remote.info);
        const connected = await coord.request({ action: 'connect', peer: half.info });
        if (!connected.ok) throw new Error(`host b: ${connected.error}`);
        const ready: ReadyPath = {
          client: half.endpoint, server: { ns: undefined, ip: remote.info.ip }, daemonPids: (half as Half).daemonPids,
          remoteUsage: async () => (await coord.request({ action: 'usage' })).usage ?? { cpuSec: null, peakRssMB: null },
        };
        await waitForPing(half.endpoint.ns, remote.info.ip);
        p.ready = ready;
        const iperf = {
          ensure: async () => { await coord.request({ action: 'iperf' }); },
          restart: async () => { await coord.request({ action: 'iperf', restart: true }); },
        };
        await measureRepeat(p, ready, iperf, r, o, progress);
      } catch (err) {
        peerGone = err instanceof PeerGoneError;
        if (peerGone) throw err;
        p.status = err instanceof UnavailableError ? 'unavailable' : 'failed';
        p.reason = errorText(err);
        progress.log(`repeat ${r}/${o.repeats}  ${p.def.id}: ${p.status}: ${p.reason}`);
      } finally {
        if (!peerGone) await coord.request({ action: 'teardown' }, 60_000).catch(() => undefined);
        await half?.teardown();
      }
    }
  }
  let peers: ProgramPeersResult[] = [];
  if (o.control.includes('program-peers')) {
    progress.addSteps(programPeersSteps(paths.map((p) => p.def), o.quick ? 1 : o.repeats, o.peers));
    peers = await programPeers(paths.map((p) => p.def), o.quick ? 1 : o.repeats, o.peers, progress);
  }
  const lease: LeaseToPacketResult[] = o.control.includes('lease-to-packet')
    ? paths.filter((p) => p.def.backend).map((p) => ({ datapath: p.def.id, status: 'skipped', reason: 'measured in local mode only (it needs a third, fake peer host)', samples: [], summary: null }))
    : [];
  return { paths, programPeers: peers, leaseToPacket: lease };
}

async function waitForPing(ns: string | undefined, ip: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if ((await execOn(ns, 'ping', ['-n', '-q', '-c', '1', '-W', '1', ip])).code === 0) return;
  }
  throw new Error(`${ip} is not reachable over the data path after 30 s`);
}

/** The other host must be the one named by --peer (a stale or foreign host b would skew everything). */
function checkPeer(announced: string, expected: string): void {
  if (announced !== expected) throw new PeerGoneError(`the other host says it is ${announced}, but --peer is ${expected}`);
}
