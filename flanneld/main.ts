#!/usr/bin/env node
// flanneld's entry point: parse flags, run the daemon until SIGTERM/SIGINT, map errors to exit codes.
// The only place in the program that calls process.exit.
import { readFileSync } from 'node:fs';
import { FlannelError, errorMessage, isAbortError } from '../lib/errors.js';
import { runDaemon } from './daemon.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { createLogger } from './logger.js';
import { loggableFlags, parseFlags, usage } from './options.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(): Promise<number> {
  let flags;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`flanneld: ${errorMessage(err)}\n`);
    return err instanceof FlannelError ? exitCodeFor(err.code) : EXIT.USAGE;
  }
  if (flags.help) { process.stdout.write(`${usage()}\n`); return EXIT.OK; }
  if (flags.version) { process.stdout.write(`flanneld (flannel-ts) ${version()}\n`); return EXIT.OK; }
  const log = createLogger(flags['log-level']);
  log.info({ flags: loggableFlags(flags), version: version() }, 'starting flanneld');
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => { log.info(`received ${sig}, shutting down`); stop.abort(); });
  try {
    await runDaemon(flags, log, stop.signal);
    return EXIT.OK;
  } catch (err) {
    if (isAbortError(err) && stop.signal.aborted) { log.info('stopped'); return EXIT.OK; }
    const code = err instanceof FlannelError ? err.code : undefined;
    log.fatal({ code, err }, errorMessage(err));
    return exitCodeFor(code);
  }
}

process.exitCode = await main();
// Open etcd channels or timers must not keep a finished daemon alive.
setTimeout(() => process.exit(), 2000).unref();
