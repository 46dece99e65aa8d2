// A self-made SVG chart of a result: bar panels for TCP throughput, small-packet UDP rate with its loss
// beside it (on a right-hand 0–100 % axis) and round-trip latency per data path, median bars with
// min–max whiskers, "n/a" where not measured.
import type { Stat } from '../lib/stats.js';
import type { BenchResult, DataPathResult } from './result-types.js';

/** A series on the right-hand axis is a percentage, drawn against a fixed 0–100 % scale. */
interface Series { readonly name: string; readonly color: string; readonly pick: (d: DataPathResult) => Stat | null; readonly right?: boolean }
interface Panel { readonly title: string; readonly scale: number; readonly digits: number; readonly log?: boolean; readonly series: readonly Series[] }

const PANELS: readonly Panel[] = [
  {
    title: 'TCP throughput, Gbit/s (higher is better)', scale: 1, digits: 2, series: [
      { name: '1 stream', color: '#3b6fb6', pick: (d) => d.summary.tcp1Gbps },
      { name: '4 streams', color: '#8fb3e3', pick: (d) => d.summary.tcp4Gbps },
    ],
  },
  {
    title: 'UDP 64-byte flood: received, kpps (higher is better); lost, % (right axis)', scale: 1 / 1000, digits: 0, series: [
      { name: 'received', color: '#4a9c5d', pick: (d) => d.summary.udp64Pps },
      { name: 'lost %', color: '#c94a4a', pick: (d) => d.summary.udp64LossPct, right: true },
    ],
  },
  {
    title: 'Round-trip latency, µs, log scale (lower is better)', scale: 1, digits: 0, log: true, series: [
      { name: 'p50', color: '#d08a2e', pick: (d) => d.summary.rttP50Us },
      { name: 'p99', color: '#ecc48e', pick: (d) => d.summary.rttP99Us },
    ],
  },
];

/** Chart width: 960, or wider with many rows (the IPv6 rows), about 66 px per row. */
const widthFor = (rows: number): number => Math.max(960, LEFT + 20 + rows * 66);
const PANEL_H = 270;
const LEFT = 60;
/** Room right of the plot: the right-hand axis labels of a panel that has one. */
const RIGHT = 20;
const RIGHT_AXIS = 50;
const TOP = 70;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const text = (x: number, y: number, s: string, attrs = ''): string => `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`;

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 2.5, 5, 10].find((m) => m * p >= v) ?? 10) * p;
}

/** The value→y mapping and the grid lines: linear from 0, or logarithmic between powers of ten. */
function axis(p: Panel, values: readonly number[], y0: number, plotH: number): { y: (v: number) => number; ticks: Array<[number, string]> } {
  const top = Math.max(0, ...values);
  if (p.log) {
    const lo = 10 ** Math.floor(Math.log10(Math.max(1e-9, Math.min(...values.filter((v) => v > 0), top || 1))));
    const hi = Math.max(lo * 10, 10 ** Math.ceil(Math.log10(top || 1)));
    const span = Math.log10(hi) - Math.log10(lo);
    const y = (v: number): number => y0 + plotH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / span) * plotH;
    const ticks: Array<[number, string]> = [];
    for (let v = lo; v <= hi * 1.0001; v *= 10) ticks.push([v, String(v)]);
    return { y, ticks };
  }
  const max = niceMax(top);
  const step = max / 4;
  const digits = Number.isInteger(step) ? 0 : step >= 1 ? 1 : 2;
  return { y: (v) => y0 + plotH - (v / max) * plotH, ticks: [0, 1, 2, 3, 4].map((k) => [step * k, (step * k).toFixed(digits)]) };
}

function panel(p: Panel, dps: readonly DataPathResult[], y0: number): string {
  const W = widthFor(dps.length);
  const plotH = PANEL_H - 100;
  const hasRight = p.series.some((s) => s.right);
  const right = hasRight ? RIGHT_AXIS : RIGHT;
  const plotW = W - LEFT - right;
  const groupW = plotW / Math.max(1, dps.length);
  const barW = Math.min(40, (groupW - 24) / p.series.length);
  const values = dps.flatMap((d) => p.series.flatMap((s) => {
    const st = s.right ? null : s.pick(d);
    return st ? [st.min * p.scale, st.max * p.scale] : [];
  }));
  const { y: yLeft, ticks } = axis(p, values, y0, plotH);
  // The right-hand axis: 0–100 %, its grid lines those of the left axis (both have four steps).
  const yRight = (v: number): number => y0 + plotH - (Math.min(100, Math.max(0, v)) / 100) * plotH;
  const out = [text(LEFT, y0 - 22, p.title, 'font-size="14" font-weight="bold"')];
  p.series.forEach((s, i) => {
    out.push(`<rect x="${W - 260 + i * 110}" y="${y0 - 12}" width="12" height="12" fill="${s.color}"/>`, text(W - 243 + i * 110, y0 - 2, s.name, 'font-size="12"'));
  });
  for (const [k, [v, label]] of ticks.entries()) {
    out.push(`<line x1="${LEFT}" x2="${W - right}" y1="${yLeft(v).toFixed(1)}" y2="${yLeft(v).toFixed(1)}" stroke="#ddd"/>`,
      text(LEFT - 6, yLeft(v) + 4, label, 'font-size="11" text-anchor="end" fill="#555"'));
    if (hasRight && !p.log && ticks.length === 5) out.push(text(W - right + 6, yLeft(v) + 4, `${k * 25} %`, 'font-size="11" fill="#c94a4a"'));
  }
  dps.forEach((d, g) => {
    const gx = LEFT + g * groupW + (groupW - barW * p.series.length) / 2;
    p.series.forEach((s, i) => {
      const st = s.pick(d);
      const x = gx + i * barW;
      const y = s.right ? yRight : yLeft;
      const scale = s.right ? 1 : p.scale;
      const digits = s.right ? 1 : p.digits;
      if (!st) {
        out.push(text(x + barW / 2, y0 + plotH - 4, 'n/a', 'font-size="11" text-anchor="middle" fill="#999"'));
        return;
      }
      const [med, lo, hi] = [st.median, st.min, st.max].map((v) => v * scale) as [number, number, number];
      out.push(`<rect x="${(x + 2).toFixed(1)}" y="${y(med).toFixed(1)}" width="${(barW - 4).toFixed(1)}" height="${(y0 + plotH - y(med)).toFixed(1)}" fill="${s.color}"/>`);
      if (st.n > 1) {
        const cx = (x + barW / 2).toFixed(1);
        out.push(`<path d="M${cx} ${y(lo).toFixed(1)}V${y(hi).toFixed(1)}M${(x + barW / 2 - 5).toFixed(1)} ${y(hi).toFixed(1)}h10M${(x + barW / 2 - 5).toFixed(1)} ${y(lo).toFixed(1)}h10" stroke="#222" fill="none"/>`);
      }
      out.push(text(x + barW / 2, y(hi) - 4, med.toFixed(digits), 'font-size="10" text-anchor="middle"'));
    });
    // The real flannel's rows ("flannel v0.28.10 vxlan") on three lines: flannel, the backend, the release. The
    // IPv6 rows ("flanneld host-gw IPv6") as their IPv4 row, with a last line "IPv6".
    const ipv6 = / IPv6\b/.test(d.label);
    const label = d.label.replace(/ IPv6\b/, '');
    const real = /^flannel (\S+) (.+)$/.exec(label);
    const lines = real ? ['flannel', real[2] as string, real[1] as string] : label.replace(/^flanneld /, '').split(/ (?=\()/);
    if (ipv6) lines.push('IPv6');
    if (d.status !== 'measured') lines.push(d.status);
    lines.forEach((line, k) => out.push(text(LEFT + g * groupW + groupW / 2, y0 + plotH + 15 + k * 13, line, `font-size="11" text-anchor="middle"${k > 0 ? ' fill="#555"' : ''}`)));
  });
  out.push(`<line x1="${LEFT}" x2="${W - right}" y1="${y0 + plotH}" y2="${y0 + plotH}" stroke="#333"/>`);
  return out.join('\n');
}

export function renderSvg(r: BenchResult): string {
  const W = widthFor(r.datapaths.length);
  const H = TOP + PANELS.length * PANEL_H + 10;
  const env = r.environment;
  const subtitle = `${r.startedAt.slice(0, 10)} · ${env.cpuModel}, ${env.cores} cores · Linux ${env.kernel} · ${r.options.repeats} repeat(s) × ${r.options.durationSec} s · bars: median, whiskers: min–max`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    text(LEFT, 28, 'flannel-ts data paths: throughput and latency', 'font-size="18" font-weight="bold"'),
    text(LEFT, 48, subtitle, 'font-size="12" fill="#555"'),
    ...PANELS.map((p, i) => panel(p, r.datapaths, TOP + 40 + i * PANEL_H)),
    '</svg>',
    '',
  ].join('\n');
}
