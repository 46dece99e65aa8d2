// Runs one external program (ip, iptables-restore, …) without a shell, optionally feeding stdin.
// Never throws for a non-zero exit: callers decide what a failure means from code and stderr.
import { spawn } from 'node:child_process';
import { FlannelError } from './errors.js';

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCommand(file: string, args: readonly string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      reject(new FlannelError('FLN_ERR_KERNEL_OP', `cannot run ${file}: ${e.message}; is it installed and on PATH?`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.on('error', () => { /* the child exited early; its exit code tells the story */ });
    child.stdin.end(input ?? '');
  });
}

/** Runs a command that must succeed; the error names the operation and quotes stderr. */
export async function runChecked(file: string, args: readonly string[], what: string, input?: string): Promise<string> {
  const r = await runCommand(file, args, input);
  if (r.code !== 0) {
    throw new FlannelError('FLN_ERR_KERNEL_OP', `${what} failed: ${file} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`, {
      details: { file, args, code: r.code },
    });
  }
  return r.stdout;
}
