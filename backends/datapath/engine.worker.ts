// A packet-engine worker for one device queue: one direction (tx: device → UDP, rx: UDP → device),
// both on one thread, or one of the adaptive pair (lead: TX and, while light, RX; assist: RX under load). Flow: 1. create a native engine context over the fds and shared memory it was
// given; 2. loop: pump() runs the C loop until idle for 1 s or 256 steps, then yields to the event
// loop, so control messages are never starved (an idle worker wakes once a second); 3. on the stop eventfd, destroy the context and exit.
// Imports nothing of the control plane; no per-packet JS.
import { parentPort, workerData } from 'node:worker_threads';
import { type EngineFeatures, type EngineSpec, PUMP, PUMP_DIRS, datapathAddon } from './native/datapath-addon.js';

export type WorkerDirection = 'tx' | 'rx' | 'both' | 'lead' | 'assist';

export interface WorkerData {
  readonly direction: WorkerDirection;
  readonly spec: EngineSpec;
}

export type WorkerMessage = { readonly type: 'crash' };
export type WorkerReport = { readonly type: 'features'; readonly direction: WorkerDirection; readonly features: EngineFeatures };

const { direction, spec } = workerData as WorkerData;
const addon = datapathAddon();
const engine = addon.engineCreate(spec);
const DIRS = { tx: PUMP_DIRS.TX, rx: PUMP_DIRS.RX, both: PUMP_DIRS.BOTH, lead: PUMP_DIRS.LEAD, assist: PUMP_DIRS.ASSIST } as const;
const dirs = DIRS[direction];
parentPort?.postMessage({ type: 'features', direction, features: addon.engineFeatures(engine) } satisfies WorkerReport);

parentPort?.on('message', (m: WorkerMessage) => {
  // Fault injection for tests, and the rule that an unknown message is fatal.
  throw new Error(m.type === 'crash' ? `engine ${direction} worker: crash requested` : `engine ${direction} worker: unknown message ${JSON.stringify(m)}`);
});

/** How long pump() may sleep with no traffic before it returns to this event loop. */
const IDLE_YIELD_MS = 1000;

function loop(): void {
  if (addon.pump(engine, dirs, IDLE_YIELD_MS, 256) === PUMP.STOPPED) {
    addon.engineDestroy(engine);
    parentPort?.close();
    return;
  }
  setImmediate(loop);
}
loop();
