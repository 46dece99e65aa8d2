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

/** flanneld's words when its config names a Backend.Type this build does not know at all, e.g.
 * `Backend.Type: "wireguard" is an unknown backend type; expected one of udp, vxlan, host-gw`. flanneld
 * does not exit then (an invalid config in etcd is retried, as flannel does), so the harness reads its log
 * to tell "not in this build" from a failure. Undefined when no such line is there. */
export function unknownBackendType(output: string, type: string): string | undefined {
  const escaped = type.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`Backend\\.Type: "${escaped}" is an unknown backend type[^\\n"]*`, 'i');
  for (const line of output.split('\n')) {
    let text = line;
    try {
      text = (JSON.parse(line) as { msg?: string }).msg ?? line;
    } catch { /* not JSON: the raw line */ }
    const m = re.exec(text);
    if (m) return m[0].trim();
  }
  return undefined;
}
