// Everything the benchmark creates registers how to remove it here. teardownAll() runs at the end,
// on failure, and on SIGINT/SIGTERM/SIGHUP; a final sweep deletes any namespace carrying one of our
// run tags, in case Ctrl-C arrived halfway through building a topology.
import { deleteNetns, runTag } from '../../deploy/local/netns.js';
import { runCommand } from '../../lib/run-command.js';
import { errorText, withTimeout } from '../lib/exec.js';

interface Cleanup { readonly what: string; readonly fn: () => Promise<unknown> }

const stack: Cleanup[] = [];
const tags: string[] = [];
let running: Promise<void> | undefined;

/** A unique run tag (see runTag) whose namespaces the final sweep removes. */
export function benchTag(prefix: string): string {
  const tag = runTag(prefix);
  tags.push(tag);
  return tag;
}

/** Registers a cleanup; the returned function runs it now (once) and unregisters it. */
export function onTeardown(what: string, fn: () => Promise<unknown>): () => Promise<void> {
  const entry: Cleanup = { what, fn };
  stack.push(entry);
  return async () => {
    const i = stack.indexOf(entry);
    if (i < 0) return;
    stack.splice(i, 1);
    await runOne(entry);
  };
}

async function runOne(c: Cleanup): Promise<void> {
  try {
    await withTimeout(c.fn(), 60_000, `teardown of ${c.what}`);
  } catch (err) {
    process.stderr.write(`teardown of ${c.what} failed: ${errorText(err)}\n`);
  }
}

/** Runs every registered cleanup, newest first, then sweeps our namespaces. Safe to call twice. */
export function teardownAll(): Promise<void> {
  running ??= (async () => {
    while (stack.length > 0) await runOne(stack.pop() as Cleanup);
    await sweepNamespaces();
  })();
  return running;
}

/** Deletes every namespace named after one of our run tags (and the processes in it). */
async function sweepNamespaces(): Promise<void> {
  const list = await runCommand('ip', ['netns', 'list']);
  const ours = list.stdout.split('\n').map((l) => l.split(' ')[0] ?? '')
    .filter((name) => tags.some((t) => name.startsWith(`${t}-`)));
  if (ours.length > 0) await deleteNetns(ours);
}

/** A reader that went away (`npm run bench | head`) must not end the run before its teardown: output to
 * a closed pipe is dropped. Any other uncaught error still tears everything down before exiting 1. */
export function installCrashHandlers(): void {
  const gone = new Set(['EPIPE', 'ERR_STREAM_DESTROYED']);
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (!gone.has(err.code ?? '')) throw err;
    });
  }
  process.on('uncaughtException', (err) => {
    if (gone.has((err as NodeJS.ErrnoException).code ?? '')) return;
    try {
      process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
    } catch { /* stderr is gone too */ }
    void teardownAll().finally(() => process.exit(1));
  });
}

/** Ctrl-C and friends: tear down, then exit 128+signal. A second Ctrl-C does not skip the teardown. */
export function installSignalHandlers(): void {
  const codes: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
  for (const [signal, code] of Object.entries(codes) as Array<[NodeJS.Signals, number]>) {
    process.on(signal, () => {
      if (running) {
        process.stderr.write('\nstill tearing down, please wait...\n');
        return;
      }
      process.stderr.write(`\n${signal}: tearing everything down...\n`);
      // The interrupted work may still create a namespace meanwhile: sweep once more before leaving.
      void teardownAll().then(sweepNamespaces).finally(() => process.exit(code));
    });
  }
}
