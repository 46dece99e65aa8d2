// The delegate config saved per container under dataDir (flannel's "scratch" netconf): written before
// the delegate's ADD so that DEL can undo exactly what ADD did. Directory 0700, file 0600, fsync'd.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CNI_CODES, CniError } from './cni-error.js';

function ioError(what: string, err: unknown): CniError {
  return new CniError(CNI_CODES.IO_FAILURE, `${what}: ${(err as Error).message}`);
}

/** Writes <dataDir>/<containerId> atomically (temp file, fsync, rename, fsync of the directory). */
export function saveScratch(dataDir: string, containerId: string, bytes: string): void {
  const path = join(dataDir, containerId);
  const tmp = join(dataDir, `.${containerId}.tmp`);
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dir = openSync(dataDir, 'r');
    try { fsyncSync(dir); } finally { closeSync(dir); }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw ioError(`failed to save the delegate config ${path}`, err);
  }
}

/** The saved config, or undefined when there is none for this container. */
export function readScratch(dataDir: string, containerId: string): string | undefined {
  const path = join(dataDir, containerId);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(`failed to read the delegate config ${path}`, err);
  }
}

export function removeScratch(dataDir: string, containerId: string): void {
  try {
    rmSync(join(dataDir, containerId), { force: true });
  } catch (err) {
    throw ioError(`failed to remove the delegate config ${join(dataDir, containerId)}`, err);
  }
}
