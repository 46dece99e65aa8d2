// Unit test of the bench's rows for the real flannel (flannel-io/flannel's flanneld, deploy/local/real-flannel.ts):
// part of the default set, each right after our row of the same backend with the same Backend JSON, run by the
// real flanneld (daemon: 'flannel'), local mode only, labelled with the pinned release; program-peers (our backend
// code) leaves them out, lease→first packet fakes their peers as ours; the chart names them on three lines; and
// the build is never a failure without Go. The IPv6 rows flannel-host-gw6 and flannel-vxlan6 follow ours of the
// same backend over IPv6 (host-gw6, vxlan-kernel6), dual-stack.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseDataPaths } from '../../bench/cli/options.js';
import { programPeersSteps } from '../../bench/control-plane/program-peers.js';
import { DATAPATHS, REAL_FLANNEL_VERSION, dataPathDef, isRealFlannel } from '../../bench/datapaths/catalog.js';
import { renderSvg } from '../../bench/report/svg-chart.js';
import { renderTable } from '../../bench/report/table.js';
import { type BenchResult, DATAPATH_IDS, type DataPathId, REAL_FLANNEL_IDS } from '../../bench/report/result-types.js';
import { goToolDir, pinnedVersionOf } from '../../deploy/local/go-tool.js';
import { buildRealFlannel, FLANNEL_MODULE } from '../../deploy/local/real-flannel.js';

const PAIRS: Array<[DataPathId, DataPathId]> = [['flannel-host-gw', 'host-gw'], ['flannel-udp', 'udp'], ['flannel-vxlan', 'vxlan']];
/** The IPv6 rows: the real flannel's right after ours of the same backend (vxlan: our kernel data path, as flannel's). */
const PAIRS6: Array<[DataPathId, DataPathId, string]> = [['flannel-host-gw6', 'host-gw6', 'host-gw'], ['flannel-vxlan6', 'vxlan-kernel6', 'vxlan']];

t.test('the real flannel\'s rows: default, right after ours, the same Backend JSON, run by the real flanneld', async (t) => {
  t.same(DATAPATHS.filter(isRealFlannel).map((d) => d.id), [...REAL_FLANNEL_IDS]);
  for (const [real, ours] of PAIRS) {
    const def = dataPathDef(real);
    t.ok(DATAPATH_IDS.includes(real), `${real} is in the default set`);
    t.equal(def.daemon, 'flannel', `${real} runs the real flanneld`);
    t.same(def.backend, dataPathDef(ours).backend, `${real} has ${ours}'s Backend JSON`);
    t.notOk(isRealFlannel(dataPathDef(ours)), `${ours} is ours`);
    t.ok(def.localOnly, `${real}: local mode only`);
    t.equal(def.label, `flannel ${REAL_FLANNEL_VERSION} ${ours}`);
  }
  // flannel's vxlan is the kernel device: it follows both of our vxlan rows.
  t.ok(DATAPATH_IDS.indexOf('flannel-host-gw') === DATAPATH_IDS.indexOf('host-gw') + 1);
  t.ok(DATAPATH_IDS.indexOf('flannel-udp') === DATAPATH_IDS.indexOf('udp') + 1);
  t.ok(DATAPATH_IDS.indexOf('flannel-vxlan') === DATAPATH_IDS.indexOf('vxlan-kernel') + 1);
  const goMod = readFileSync(join(goToolDir('flannel'), 'go.mod'), 'utf8');
  t.equal(REAL_FLANNEL_VERSION, pinnedVersionOf(goMod, FLANNEL_MODULE), `the label names the pinned release (${REAL_FLANNEL_VERSION})`);
  t.match(REAL_FLANNEL_VERSION, /^v\d+\.\d+\.\d+/);
  t.same(parseDataPaths('kernel-vxlan,flannel-vxlan,vxlan-kernel'), ['kernel-vxlan', 'flannel-vxlan', 'vxlan-kernel'], 'named in any order');
});

t.test('the real flannel\'s IPv6 rows: right after ours of the same backend, dual-stack, the IPv4 row\'s Backend JSON', async (t) => {
  for (const [real, ours, v4] of PAIRS6) {
    const def = dataPathDef(real);
    t.ok(DATAPATH_IDS.includes(real), `${real} is in the default set`);
    t.equal(DATAPATH_IDS.indexOf(real), DATAPATH_IDS.indexOf(ours) + 1, `${real} right after ${ours}`);
    t.equal(def.daemon, 'flannel', `${real} runs the real flanneld`);
    t.ok(def.ipv6 && dataPathDef(ours).ipv6, `${real} and ${ours} are measured over IPv6`);
    t.same(def.backend, dataPathDef(`flannel-${v4}` as DataPathId).backend, `${real} has flannel-${v4}'s Backend JSON`);
    t.ok(def.localOnly, `${real}: local mode only`);
    t.equal(def.label, `flannel ${REAL_FLANNEL_VERSION} ${v4} IPv6`);
  }
});

t.test('control plane: program-peers measures our backend code only; lease→packet fakes host-gw and vxlan peers', async (t) => {
  const ours = DATAPATHS.filter((d) => d.backend && !isRealFlannel(d) && !d.ipv6);
  t.equal(programPeersSteps(DATAPATHS, 1, [10]), ours.length, 'one step per IPv4 row of ours, none for flannel-* (nor the IPv6 rows)');
  t.equal(dataPathDef('flannel-host-gw').fakePeer, 'host-gw');
  t.equal(dataPathDef('flannel-vxlan').fakePeer, 'vxlan');
  t.notOk(dataPathDef('flannel-udp').fakePeer, 'a udp peer cannot be faked by a lease, as for ours');
  t.match(dataPathDef('flannel-udp').noFakePeerReason, /userspace endpoint/);
});

t.test('table and chart: the rows by their label; the chart puts flannel, the backend and the release on three lines', async (t) => {
  const base = JSON.parse(readFileSync(new URL('../../bench/results/2026-12-03.json', import.meta.url), 'utf8')) as BenchResult;
  const ours = base.datapaths.find((d) => d.id === 'vxlan-kernel');
  t.ok(ours, 'a committed result with a vxlan-kernel row');
  const r: BenchResult = { ...base, datapaths: [...base.datapaths, { ...(ours as BenchResult['datapaths'][number]), id: 'flannel-vxlan', label: dataPathDef('flannel-vxlan').label }] };
  t.match(renderTable(r), new RegExp(`^flannel ${REAL_FLANNEL_VERSION.replace(/\./g, '\\.')} vxlan\\s+\\d`, 'm'));
  const svg = renderSvg(r);
  for (const line of ['flannel', 'vxlan', REAL_FLANNEL_VERSION]) t.match(svg, `>${line}</text>`, `the chart has the line ${line}`);
});

t.test('without Go the real flannel is reused from an earlier build or skipped with a reason, never an exception', async (t) => {
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  t.teardown(() => { process.env.PATH = path; });
  const r = await buildRealFlannel();
  if (r.ok) t.match(r.bin, /flanneld-v/, 'the cached build');
  else t.match(r.reason, /no Go toolchain/);
});
