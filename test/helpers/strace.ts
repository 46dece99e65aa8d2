// strace for the tests that audit what a process does: `strace -ff -o <prefix>` writes one file per
// thread or process (<prefix>.<tid>); these helpers start a command under it and read the files back
// as parsed syscalls, telling the traced process's own threads from the programs it runs.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { runCommand } from '../../lib/run-command.js';

/** True when strace is installed (`apt-get install strace`; deploy/local/install-deps.sh installs it). */
export async function straceAvailable(): Promise<boolean> {
  return runCommand('strace', ['-V']).then((r) => r.code === 0, () => false);
}

/** Syscalls that create, write, rename, remove or re-permission a path (not those acting on an fd alone). */
export const FILE_WRITE_SYSCALLS = [
  'open', 'openat', 'openat2', 'creat', 'truncate', 'mkdir', 'mkdirat', 'mknod', 'mknodat',
  'rename', 'renameat', 'renameat2', 'unlink', 'unlinkat', 'rmdir', 'link', 'linkat', 'symlink', 'symlinkat',
  'chmod', 'fchmodat', 'chown', 'lchown', 'fchownat', 'utimensat', 'utimes', 'utime',
] as const;

/**
 * Arguments for `strace` in front of a command: every thread and child followed into its own file,
 * only `syscalls` (plus execve, to tell child programs apart) stopped through seccomp-bpf, so the rest
 * runs at full speed; long strings, file descriptors shown with their paths.
 */
export function straceArgs(prefix: string, syscalls: readonly string[]): string[] {
  return ['-ff', '-qq', '--seccomp-bpf', '-s', '4096', '-y', '-o', prefix, '-e', `trace=${[...new Set([...syscalls, 'execve'])].join(',')}`];
}

export interface Syscall {
  readonly tid: number;
  /** Wall-clock time in epoch ms when strace ran with -ttt, else NaN. */
  readonly at: number;
  readonly name: string;
  /** The arguments as strace prints them. */
  readonly args: string;
  /** The quoted strings among the arguments, unescaped (paths for file syscalls; argv for execve). */
  readonly strings: string[];
  /** Return value, e.g. "0", "3</dev/net/tun>", "-1 ENOENT (No such file or directory)". */
  readonly result: string;
}

/** strace's quoted strings (C escapes). */
function unquote(s: string): string {
  return s.replace(/\\(x[0-9a-f]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]+$/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ({ n: '\n', t: '\t', r: '\r', v: '\v', f: '\f' } as Record<string, string>)[e] ?? e;
  });
}

/** Parses one line of a per-thread strace file (`[epoch.usec ]name(args) = result`); undefined for anything else. */
export function parseLine(tid: number, line: string): Syscall | undefined {
  const m = /^(?:(\d+\.\d+) )?(\w+)\((.*)\)\s+=\s+(.*)$/.exec(line);
  if (!m) return undefined;
  const args = m[3] as string;
  const strings = [...args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((s) => unquote(s[1] as string));
  return { tid, at: m[1] ? Number(m[1]) * 1000 : Number.NaN, name: m[2] as string, args, strings, result: (m[4] as string).trim() };
}

export interface Traced {
  /** Every thread's syscalls (of the traced process itself, not of the programs it ran). */
  readonly own: Syscall[];
  /** The programs the process ran: argv of each child's last execve, and when it was made (NaN without -ttt). */
  readonly children: Array<{ readonly argv: string[]; readonly at: number }>;
}

/**
 * Reads the per-thread files of `prefix`. A file with an execve other than the traced program's own
 * (`mainArg` in its argv) belongs to a child process, which is listed by what it ran; every other
 * file is a thread of the traced process.
 */
export function readTrace(prefix: string, mainArg: string): Traced {
  const dir = dirname(prefix);
  const own: Syscall[] = [];
  const children: Array<{ argv: string[]; at: number }> = [];
  if (!existsSync(dir)) return { own, children };
  for (const f of readdirSync(dir)) {
    if (!f.startsWith(`${basename(prefix)}.`)) continue;
    const tid = Number(f.slice(basename(prefix).length + 1));
    const calls = readFileSync(`${dir}/${f}`, 'utf8').split('\n').map((l) => parseLine(tid, l)).filter((c): c is Syscall => c !== undefined);
    const execs = calls.filter((c) => c.name === 'execve');
    if (execs.some((c) => !c.strings.includes(mainArg))) {
      const last = execs.at(-1) as Syscall;
      children.push({ argv: last.strings.slice(1), at: last.at });
      continue;
    }
    own.push(...calls.filter((c) => c.name !== 'execve'));
  }
  return { own, children };
}

const WRITE_FLAGS = /\b(O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND)\b/;

/** A path-changing access: which syscall, the path(s), and whether it succeeded. */
export interface FileWrite { readonly call: string; readonly paths: string[]; readonly ok: boolean }

/**
 * The writes among parsed syscalls: opens with a write or create flag, and every other syscall of
 * FILE_WRITE_SYSCALLS (attempts that failed included). Paths relative to a directory fd (`-y` prints
 * it as `5</dir>`) are made absolute.
 */
export function fileWrites(calls: readonly Syscall[]): FileWrite[] {
  const out: FileWrite[] = [];
  for (const c of calls) {
    if (!(FILE_WRITE_SYSCALLS as readonly string[]).includes(c.name)) continue;
    if (/^open|^openat/.test(c.name) && !WRITE_FLAGS.test(c.args)) continue;
    const dirFd = /^(?:\d+|AT_FDCWD)<([^>]*)>,\s*"/.exec(c.args)?.[1];
    const paths = c.strings.map((p) => (p.startsWith('/') || !dirFd ? p : `${dirFd}/${p}`));
    out.push({ call: c.name, paths, ok: !c.result.startsWith('-1') });
  }
  return out;
}
