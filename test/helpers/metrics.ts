// Reads one sample from a daemon's Prometheus /metrics, fetched from inside its namespace.
import { execCheckedIn } from '../../deploy/local/netns.js';

export async function scrapeMetric(ns: string, port: number, name: string, labels = ''): Promise<number> {
  const text = await execCheckedIn(ns, process.execPath, ['-e', `fetch("http://127.0.0.1:${port}/metrics").then(r=>r.text()).then(console.log)`]);
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
