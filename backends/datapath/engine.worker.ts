// A packet-engine worker for one device queue: one direction (tx: device → UDP, rx: UDP → device) or
// both on one thread. Flow: 1. create a native engine context over the fds and shared memory it was
// given; 2. loop: pump() runs the C loop until idle for 100 ms or 256 steps, then yields to the event
// loop, so control messages are never starved; 3. on the stop eventfd, destroy the context and exit.
// Imports nothing of the control plane; no per-packet JS.
import { parentPort, workerData } from 'node:worker_threads';
import { type EngineFeatures, type EngineSpec, PUMP, PUMP_DIRS, datapathAddon } from './native/datapath-addon.js';

export type WorkerDirection = 'tx' | 'rx' | 'both';

export interface WorkerData {
  readonly direction: WorkerDirection;
  readonly spec: EngineSpec;
}

export type WorkerMessage = { readonly type: 'crash' };
export type WorkerReport = { readonly type: 'features'; readonly direction: WorkerDirection; readonly features: EngineFeatures };

const { direction, spec } = workerData as WorkerData;
const addon = datapathAddon();
const engine = addon.engineCreate(spec);
const dirs = direction === 'tx' ? PUMP_DIRS.TX : direction === 'rx' ? PUMP_DIRS.RX : PUMP_DIRS.BOTH;
parentPort?.postMessage({ type: 'features', direction, features: addon.engineFeatures(engine) } satisfies WorkerReport);

parentPort?.on('message', (m: WorkerMessage) => {
  // Fault injection for tests, and the rule that an unknown message is fatal.
  throw new Error(m.type === 'crash' ? `engine ${direction} worker: crash requested` : `engine ${direction} worker: unknown message ${JSON.stringify(m)}`);
});

function loop(): void {
  if (addon.pump(engine, dirs, 100, 256) === PUMP.STOPPED) {
    addon.engineDestroy(engine);
    parentPort?.close();
    return;
  }
  setImmediate(loop);
}
loop();
