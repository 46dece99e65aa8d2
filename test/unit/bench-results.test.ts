// The result files committed under bench/results/ (quoted by the README) still match the schema the
// harness checks its own output against, including files written before a field was added; the chart
// drawn from one puts the UDP loss beside the received rate.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { validateResult } from '../../bench/report/result-schema.js';
import type { BenchResult } from '../../bench/report/result-types.js';
import { renderSvg } from '../../bench/report/svg-chart.js';
import { renderTable } from '../../bench/report/table.js';

const DIR = new URL('../../bench/results/', import.meta.url).pathname;
const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));

t.ok(files.length > 0, 'there are committed results');
for (const f of files) {
  t.same(validateResult(JSON.parse(readFileSync(join(DIR, f), 'utf8'))), [], `${f} matches the schema`);
}

t.test('a file from before machine CPU was measured still validates; one with a broken figure does not', async (t) => {
  const old = files.find((f) => !readFileSync(join(DIR, f), 'utf8').includes('machineCpuSecPerGB'));
  const recent = files.find((f) => readFileSync(join(DIR, f), 'utf8').includes('machineCpuSecPerGB'));
  t.ok(old && recent, 'both kinds are committed');
  const broken = JSON.parse(readFileSync(join(DIR, recent as string), 'utf8')) as { datapaths: Array<{ summary: Record<string, unknown> }> };
  const dp = broken.datapaths.find((d) => d.summary.machineCpuSecPerGB);
  if (dp) dp.summary.machineCpuSecPerGB = { median: 9, min: 1, max: 2, n: 3 };
  t.ok(validateResult(broken).some((p) => p.includes('machineCpuSecPerGB')), 'the new figure is checked when present');
});

t.test('chart: the 64-byte UDP panel shows each row\'s loss beside its received rate, on a 0–100 % axis', async (t) => {
  const r = JSON.parse(readFileSync(join(DIR, '2026-12-04.json'), 'utf8')) as BenchResult;
  const svg = renderSvg(r);
  t.match(svg, '>lost %</text>', 'a "lost %" series in the legend');
  t.match(svg, '>100 %</text>', 'its right-hand axis');
  for (const d of r.datapaths) {
    const loss = d.summary.udp64LossPct;
    if (!loss) continue;
    t.match(svg, `>${loss.median.toFixed(1)}</text>`, `${d.id}: its median loss ${loss.median.toFixed(1)} % is labelled`);
  }
  const relay = r.datapaths.find((d) => d.id === 'tun-relay')?.summary.udp64LossPct;
  const ref = r.datapaths.find((d) => d.id === 'kernel-vxlan')?.summary.udp64LossPct;
  const barHeight = (median: number): number => {
    const m = new RegExp(`<rect [^>]*height="([\\d.]+)" fill="#c94a4a"/>\\n<path[^\\n]*\\n<text [^>]*>${median.toFixed(1)}</text>`).exec(svg);
    return Number(m?.[1]);
  };
  t.ok(relay && ref && barHeight(relay.median) > 10 * barHeight(ref.median), 'a loss of 53.5 % is drawn far taller than one of 1.8 %');
});

t.test('kube-nodes: a result with the kube-mode control-plane row validates and prints; a broken one does not', async (t) => {
  const r = JSON.parse(readFileSync(join(DIR, '2026-12-04.json'), 'utf8')) as BenchResult;
  const stat = (v: number) => ({ median: v, min: v, max: v, n: 1 });
  const kubeNodes: NonNullable<BenchResult['controlPlane']['kubeNodes']> = {
    backend: 'host-gw', status: 'measured',
    samples: [{ repeat: 1, nodes: 10, createMs: 103, routedMs: 120, removedMs: 71.2 }],
    summary: [{ nodes: 10, createMs: stat(103), routedMs: stat(120), perNodeUs: stat(12000), removedMs: stat(71.2) }],
  };
  const withKube: BenchResult = { ...r, controlPlane: { ...r.controlPlane, kubeNodes } };
  t.same(validateResult(withKube), [], 'validates');
  t.match(renderTable(withKube), /Control plane, kube mode: N Nodes created in a real kube-apiserver → host-gw routes[^\n]*\nstep\s+N=10\s*\ncreated\s+103\s*\nrouted\s+120\s*\nremoved\s+71\.2/, 'the table');
  t.notMatch(renderTable(r), /kube mode/, 'absent when not measured');
  const broken = { ...withKube, controlPlane: { ...withKube.controlPlane, kubeNodes: { ...kubeNodes, status: 'fine', samples: [{ repeat: 1, nodes: 10 }] } } };
  const problems = validateResult(broken);
  t.ok(problems.some((p) => p.startsWith('controlPlane.kubeNodes.status')), 'a bad status is caught');
  t.ok(problems.some((p) => p.startsWith('controlPlane.kubeNodes.samples[0].routedMs')), 'and a missing figure');
});
