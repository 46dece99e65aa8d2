// Unit test of the bench's IPv6 rows (issue #18): kernel-vxlan6 (the reference, kernel VXLAN over an IPv6
// underlay by hand), host-gw6 and vxlan-kernel6 (our flanneld, dual-stack), flannel-host-gw6 and flannel-vxlan6
// (the real flannel, dual-stack), last in the default set, local mode only; no row for the userspace vxlan data
// path. Their ratios are against kernel-vxlan6, the IPv4 rows' against kernel-vxlan, each measured in the same run;
// lease→first packet and program-peers list them as skipped with the reason; flannel-v6.1 by hand has ext−70.
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { Progress } from '../../bench/cli/progress.js';
import { leaseToPacket } from '../../bench/control-plane/lease-to-packet.js';
import { programPeers, programPeersSteps } from '../../bench/control-plane/program-peers.js';
import { DATAPATHS, dataPathDef, OVERLAY_NETWORK6 } from '../../bench/datapaths/catalog.js';
import {
  VTEP6_DEV, VTEP_DEV, VXLAN6_OVERHEAD, VXLAN_OVERHEAD, vtepDevOf, vxlanOverheadOf,
} from '../../bench/datapaths/kernel-vxlan.js';
import { renderSvg } from '../../bench/report/svg-chart.js';
import { renderTable } from '../../bench/report/table.js';
import {
  type BenchResult, DATAPATH_IDS, type DataPathId, type DataPathResult, IPV6_DATAPATH_IDS, isIpv6Row, referenceOf,
} from '../../bench/report/result-types.js';
import { validateResult } from '../../bench/report/result-schema.js';

const V6 = ['kernel-vxlan6', 'host-gw6', 'flannel-host-gw6', 'vxlan6', 'vxlan-kernel6', 'flannel-vxlan6', 'wireguard6'];

/** A Progress that prints nothing. */
const quiet = { addSteps: () => {}, start: () => {}, finish: () => {}, log: () => {}, close: () => {} } as unknown as Progress;

t.test('the IPv6 rows: last in the default set, dual-stack, local mode only', async (t) => {
  t.same([...IPV6_DATAPATH_IDS], V6);
  t.same(DATAPATH_IDS.slice(-V6.length), V6, 'after every IPv4 row');
  for (const id of V6) {
    const def = dataPathDef(id as DataPathId);
    t.equal(def.ipv6, true, `${id} is measured over IPv6`);
    t.ok(isIpv6Row(def.id), `${id}: isIpv6Row`);
    t.match(def.localOnly, /./, `${id}: local mode only`);
    t.match(def.label, / IPv6\b/, `${id}: its label says IPv6 (${def.label})`);
  }
  t.same(DATAPATHS.filter((d) => d.ipv6).map((d) => d.id), V6, 'no other row is IPv6');
  t.same(dataPathDef('vxlan6').backend, dataPathDef('vxlan').backend, 'vxlan6: the userspace data path, vxlan\'s Backend JSON');
  t.same(dataPathDef('host-gw6').backend, dataPathDef('host-gw').backend, 'host-gw6: host-gw\'s Backend JSON');
  t.same(dataPathDef('vxlan-kernel6').backend, { Type: 'vxlan', Datapath: 'kernel' }, 'vxlan-kernel6: the kernel data path');
  t.notOk(dataPathDef('kernel-vxlan6').backend, 'kernel-vxlan6 is built by hand');
  t.equal(OVERLAY_NETWORK6, 'fd00:10:244::/56');
});

t.test('the reference of each row is kernel VXLAN by hand of its family', async (t) => {
  for (const id of DATAPATH_IDS) t.equal(referenceOf(id), V6.includes(id) ? 'kernel-vxlan6' : 'kernel-vxlan', id);
});

t.test('flannel-v6.1 by hand: the family follows from the addresses; overhead 70 (IPv6 underlay), 50 for flannel.1', async (t) => {
  t.equal(vtepDevOf('2001:db8::1'), VTEP6_DEV);
  t.equal(VTEP6_DEV, 'flannel-v6.1');
  t.equal(vtepDevOf('fd00:10:244:2::'), 'flannel-v6.1');
  t.equal(vtepDevOf('192.0.2.1'), VTEP_DEV);
  t.equal(vxlanOverheadOf('2001:db8::1'), 70);
  t.equal(VXLAN6_OVERHEAD, 70);
  t.equal(vxlanOverheadOf('10.244.1.0'), VXLAN_OVERHEAD);
});

/** A committed result with kernel-vxlan, host-gw and vxlan-kernel rows, and IPv6 rows made from them with other figures. */
function resultWithIpv6Rows(): BenchResult {
  const base = JSON.parse(readFileSync(new URL('../../bench/results/2026-12-04.json', import.meta.url), 'utf8')) as BenchResult;
  const pick = (id: DataPathId): DataPathResult => {
    const d = base.datapaths.find((x) => x.id === id);
    if (!d) throw new Error(`no ${id} in the committed result`);
    return d;
  };
  const scaled = (d: DataPathResult, id: DataPathId, f: number): DataPathResult => {
    const s = d.summary.tcp1Gbps;
    return { ...d, id, label: dataPathDef(id).label, summary: { ...d.summary, tcp1Gbps: s && { ...s, median: s.median * f, min: s.min * f, max: s.max * f } } };
  };
  const kv = pick('kernel-vxlan');
  const rows = [kv, pick('host-gw'), scaled(kv, 'kernel-vxlan6', 0.5), scaled(kv, 'host-gw6', 0.25), { ...pick('vxlan-kernel'), id: 'vxlan-kernel6' as const, label: dataPathDef('vxlan-kernel6').label, status: 'unavailable' as const, reason: 'test' }];
  return { ...base, options: { ...base.options, datapaths: rows.map((d) => d.id) }, datapaths: rows };
}

t.test('table: the IPv6 rows\' ratios are against kernel-vxlan6, the IPv4 rows\' still against kernel-vxlan', async (t) => {
  const r = resultWithIpv6Rows();
  t.same(validateResult(r), [], 'a result with IPv6 rows matches the schema');
  const table = renderTable(r);
  const line = (label: string): string => table.split('\n').find((l) => l.startsWith(`${label} `)) ?? '';
  const kv = r.datapaths[0]?.summary.tcp1Gbps?.median as number;
  const hg = r.datapaths[1]?.summary.tcp1Gbps?.median as number;
  t.match(line('kernel VXLAN by hand (ref)'), /^kernel VXLAN by hand \(ref\)\s+[\d.]+ 1\.00×/);
  t.match(line('flanneld host-gw'), new RegExp(`^flanneld host-gw\\s+${hg.toFixed(2)} ${(hg / kv).toFixed(2)}×`), 'host-gw against kernel-vxlan');
  t.match(line(dataPathDef('kernel-vxlan6').label), new RegExp(`^kernel VXLAN IPv6 by hand \\(ref\\)\\s+${(kv * 0.5).toFixed(2)} 1\\.00×`), 'kernel-vxlan6 is its own reference');
  t.match(line('flanneld host-gw IPv6'), new RegExp(`^flanneld host-gw IPv6\\s+${(kv * 0.25).toFixed(2)} 0\\.50×`), 'host-gw6 against kernel-vxlan6 (not kernel-vxlan: 0.25×)');
  t.match(line('flanneld vxlan (kernel) IPv6'), /unavailable: test/);
  t.match(table, /their ×ref is to kernel VXLAN IPv6 by hand \(kernel-vxlan6\)/, 'the head says so');
  const col = table.split('\n').find((l) => l.startsWith('data path'))?.indexOf('TCP 1 stream') ?? -1;
  t.ok(col > 'kernel VXLAN IPv6 by hand (ref)'.length, `the longer labels widen the label column (${col})`);
  for (const d of r.datapaths.filter((x) => x.status === 'measured')) t.match(line(d.label).slice(col - 1), /^ \d/, `${d.id}: its figures in that column`);

  const v4only = renderTable({ ...r, datapaths: r.datapaths.slice(0, 2) });
  t.notMatch(v4only, /IPv6/, 'an IPv4-only run says nothing of IPv6');
  t.match(v4only, /^flanneld host-gw {12}\d/m, 'and keeps the 28-character label column');

  const noRef6 = renderTable({ ...r, datapaths: r.datapaths.filter((d) => d.id !== 'kernel-vxlan6') });
  t.match(noRef6.split('\n').find((l) => l.startsWith('flanneld host-gw IPv6')), /^flanneld host-gw IPv6\s+[\d.]+\s{2,}/, 'without kernel-vxlan6 an IPv6 row has no ratio (never one against kernel-vxlan)');
});

t.test('chart: an IPv6 row is its IPv4 row\'s label with a last line "IPv6"; wider with many rows', async (t) => {
  const r = resultWithIpv6Rows();
  const svg = renderSvg(r);
  t.match(svg, '>IPv6</text>');
  t.match(svg, '>host-gw</text>');
  t.match(svg, /^<svg [^>]*width="960"/, 'five rows fit the usual width');
  const many = { ...r, datapaths: Array.from({ length: 18 }, (_, i) => ({ ...(r.datapaths[i % 4] as DataPathResult) })) };
  const width = Number(/^<svg [^>]*width="(\d+)"/.exec(renderSvg(many))?.[1]);
  t.ok(width > 960, `eighteen rows: ${width} px wide`);
});

t.test('control plane: lease→first packet and program-peers list our IPv6 rows as skipped, with the reason', async (t) => {
  const defs = V6.map((id) => dataPathDef(id as DataPathId));
  t.equal(programPeersSteps(defs, 3, [10, 100]), 0, 'no program-peers step for the IPv6 rows');
  const pp = await programPeers(defs, 1, [10], quiet);
  t.same(pp.map((p) => [p.datapath, p.status]), [['host-gw6', 'skipped'], ['vxlan6', 'skipped'], ['vxlan-kernel6', 'skipped'], ['wireguard6', 'skipped']], 'ours listed (not the real flannel\'s, nor the hand-built)');
  for (const p of pp) t.match(p.reason, /IPv6 row: .*IPv4-only.*IPv4 row/, `${p.datapath}: ${p.reason}`);
  const lp = await leaseToPacket(defs.map((def) => ({ def, status: 'measured' as const })), 1, quiet);
  t.same(lp.map((l) => [l.datapath, l.status]), [['host-gw6', 'skipped'], ['flannel-host-gw6', 'skipped'], ['vxlan6', 'skipped'], ['vxlan-kernel6', 'skipped'], ['flannel-vxlan6', 'skipped'], ['wireguard6', 'skipped']]);
  for (const l of lp) t.match(l.reason, /IPv6 row: the fake peer announces an IPv4-only lease/, `${l.datapath}: ${l.reason}`);
});
