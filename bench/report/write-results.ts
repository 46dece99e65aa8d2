// Writes a result as PREFIX.json (every raw figure), PREFIX.svg (the chart) and PREFIX.txt (the table),
// and works out the caveats worth noting (machine load, failed samples, wide spreads).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BenchResult, DataPathResult } from './result-types.js';
import { renderSvg } from './svg-chart.js';
import { renderTable } from './table.js';

/** JSON with arrays of plain numbers kept on one line (the rtt lists would be thousands of lines). */
export function formatJson(r: BenchResult): string {
  return `${JSON.stringify(r, null, 2).replace(/\[\n\s+(-?[\d.e+-]+(?:,\n\s+-?[\d.e+-]+)*)\n\s+\]/g, (_m, inner: string) => `[${inner.split(/,\n\s+/).join(', ')}]`)}\n`;
}

export function writeResults(r: BenchResult, prefix: string): string[] {
  mkdirSync(dirname(prefix), { recursive: true });
  const files: Array<[string, string]> = [[`${prefix}.json`, formatJson(r)], [`${prefix}.svg`, renderSvg(r)], [`${prefix}.txt`, renderTable(r)]];
  for (const [file, content] of files) writeFileSync(file, content);
  return files.map(([f]) => f);
}

export function noiseNotes(datapaths: readonly DataPathResult[], loadStart: readonly number[], loadEnd: readonly number[], cores: number): string[] {
  const notes: string[] = [];
  const busy = (l: readonly number[]): boolean => (l[0] ?? 0) > cores * 0.25;
  if (busy(loadStart) || busy(loadEnd)) {
    notes.push(`the machine was busy (1-minute load average ${loadStart[0]} at start, ${loadEnd[0]} at the end, ${cores} cores): other work shares the CPUs, so expect noise`);
  }
  for (const d of datapaths) {
    const failed = d.samples.filter((s) => s.error);
    if (failed.length > 0 && d.status === 'measured') notes.push(`${d.id}: ${failed.length} of ${d.samples.length} samples failed (first: ${failed[0]?.error})`);
    for (const [key, label] of [['tcp1Gbps', 'TCP 1 stream'], ['tcp4Gbps', 'TCP 4 streams'], ['udp64Pps', 'UDP 64 B']] as const) {
      const s = d.summary[key];
      if (s && s.n > 1 && s.min > 0 && s.max / s.min > 1.3) notes.push(`${d.id} ${label}: max/min spread is ${(s.max / s.min).toFixed(2)}×, a noisy figure`);
    }
  }
  return notes;
}
