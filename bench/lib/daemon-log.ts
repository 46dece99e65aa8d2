// Reads what flanneld said last: its logs are pino JSON lines; the most severe recent message (error
// or fatal) explains an exit, e.g. the "not available in this build" of exit code 69.

export function lastDaemonMessage(output: string): string {
  const all: string[] = [];
  const severe: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.trim()) continue;
    try {
      const rec = JSON.parse(line) as { level?: number | string; msg?: string };
      if (!rec.msg) continue;
      all.push(rec.msg);
      if (typeof rec.level === 'number' ? rec.level >= 50 : rec.level === 'error' || rec.level === 'fatal') severe.push(rec.msg);
    } catch {
      all.push(line.trim());
    }
  }
  return severe.at(-1) ?? all.at(-1) ?? '(no output)';
}
