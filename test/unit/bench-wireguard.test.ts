// Unit test of the bench's wireguard rows: part of the default set (after vxlan-kernel), --datapaths with
// named rows and the "default"/"all" groups,
// the device names (unique per run, at most 15 characters), the pinned wireguard-go module version, the
// recognition of flanneld's "unknown backend type", and that the latest wireguard-go build is never a failure.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseDataPaths, parseOptions, UsageError } from '../../bench/cli/options.js';
import { DATAPATHS } from '../../bench/datapaths/catalog.js';
import { wgDeviceName } from '../../bench/datapaths/wireguard-go.js';
import { unknownBackendType } from '../../bench/lib/daemon-log.js';
import { ALL_DATAPATH_IDS, DATAPATH_IDS } from '../../bench/report/result-types.js';
import { runTag } from '../../deploy/local/netns.js';
import {
  buildLatestWireguardGo, pinnedVersionIn, WIREGUARD_GO_MODULE, WIREGUARD_GO_TOOL, wireguardGoModuleDir,
} from '../../deploy/local/wireguard-go.js';
import { goToolBinaryPath } from '../../deploy/local/go-tool.js';

t.test('--datapaths: the default set has the wireguard rows after vxlan-kernel; named rows, "default" and "all"', async (t) => {
  const ids = ['raw', 'kernel-vxlan', 'host-gw', 'flannel-host-gw', 'tun-relay', 'udp', 'flannel-udp', 'vxlan', 'vxlan-kernel', 'flannel-vxlan',
    'wireguard', 'wireguard-go-latest', 'wireguard-go-debian', 'kernel-vxlan6', 'host-gw6', 'flannel-host-gw6', 'vxlan6', 'vxlan-kernel6', 'flannel-vxlan6', 'wireguard6'];
  t.same([...DATAPATH_IDS], ids, 'ours first among the wireguard rows, then the references; the IPv6 rows after them');
  t.same(parseOptions([])?.datapaths, ids, 'the default is every row');
  t.same(parseDataPaths('default'), ids);
  t.same(parseDataPaths('all'), [...ALL_DATAPATH_IDS]);
  t.same([...ALL_DATAPATH_IDS], ids, 'no row is outside the default set');
  t.same(parseDataPaths('kernel-vxlan,wireguard-go-debian,wireguard-go-latest'), ['kernel-vxlan', 'wireguard-go-debian', 'wireguard-go-latest']);
  t.same(parseDataPaths('wireguard,default'), ['wireguard', ...ids.filter((i) => i !== 'wireguard')], 'in the order given');
  t.same(parseDataPaths('raw,default'), ids, 'no row twice');
  t.throws(() => parseDataPaths('wireguard-go'), UsageError);
  t.throws(() => parseOptions(['--datapaths=']), UsageError);
});

t.test('the catalog has every known row; the flanneld wireguard row is a Backend JSON like udp and vxlan', async (t) => {
  t.same(DATAPATHS.map((d) => d.id), [...ALL_DATAPATH_IDS]);
  t.same(DATAPATHS.find((d) => d.id === 'wireguard')?.backend, { Type: 'wireguard' });
  for (const id of ['wireguard-go-debian', 'wireguard-go-latest']) {
    const def = DATAPATHS.find((d) => d.id === id);
    t.ok(def && !def.backend && def.localOnly, `${id}: built by hand, local mode only`);
  }
});

t.test('device names: fwg<run tag><node>, at most 15 characters, distinct per node and per run', async (t) => {
  const a = runTag('bd');
  const b = runTag('bl');
  const names = [wgDeviceName(a, 1), wgDeviceName(a, 2), wgDeviceName(b, 1), wgDeviceName(b, 2)];
  t.ok(names.every((n) => n.length <= 15 && n.startsWith('fwg')), names.join(' '));
  t.equal(new Set(names).size, 4);
  t.throws(() => wgDeviceName('x'.repeat(12), 1), /longer than 15/);
});

t.test('the committed go.mod pins the module (a tool requirement) and go.sum has its hash', async (t) => {
  const dir = wireguardGoModuleDir();
  const goMod = readFileSync(join(dir, 'go.mod'), 'utf8');
  const version = pinnedVersionIn(goMod);
  t.match(version, /^v\d+\.\d+\.\d+/, `pinned: ${version}`);
  t.match(goMod, new RegExp(`^tool ${WIREGUARD_GO_MODULE.replace(/\./g, '\\.')}$`, 'm'));
  t.match(readFileSync(join(dir, 'go.sum'), 'utf8'), `${WIREGUARD_GO_MODULE} ${version} h1:`);
  t.equal(pinnedVersionIn('require golang.zx2c4.com/wireguard v0.0.0-20250521234502-f333402bd9cb\n'), 'v0.0.0-20250521234502-f333402bd9cb', 'single-line require');
  t.equal(pinnedVersionIn('require (\n\tgolang.zx2c4.com/wireguard/wgctrl v0.0.0-1 // indirect\n)\n'), undefined, 'another module of the same prefix');
  t.match(goToolBinaryPath(WIREGUARD_GO_TOOL, version as string, goMod, 'sum'), /deploy\/local\/wireguard-go\/bin\/wireguard-go-v\S+-[0-9a-f]{12}$/, 'the build goes to the gitignored bin/, keyed by go.mod and go.sum');
  t.not(goToolBinaryPath(WIREGUARD_GO_TOOL, version as string, goMod, 'sum'), goToolBinaryPath(WIREGUARD_GO_TOOL, version as string, goMod, 'sum2'), 'a changed go.sum is a new build');
  t.match(readFileSync(join(dir, '..', '..', '..', '.gitignore'), 'utf8'), /^deploy\/local\/wireguard-go\/bin\/$/m);
});

t.test('flanneld that does not know a Backend.Type: its words, found in its log', async (t) => {
  const log = [
    '{"level":"info","msg":"starting"}',
    JSON.stringify({ level: 'error', code: 'FLN_ERR_CONFIG_INVALID', msg: 'Couldn\'t fetch network config: invalid config in etcd key /coreos.com/network/config (1 problem):\n  - Backend.Type: "wireguard" is an unknown backend type; expected one of udp, vxlan, host-gw' }),
  ].join('\n');
  t.equal(unknownBackendType(log, 'wireguard'), 'Backend.Type: "wireguard" is an unknown backend type; expected one of udp, vxlan, host-gw');
  t.equal(unknownBackendType(log, 'vxlan'), undefined, 'only for the type of this row');
  t.equal(unknownBackendType('{"level":"error","msg":"the wireguard backend is not available in this build"}', 'wireguard'), undefined);
});

t.test('without Go the latest build is skipped with a reason, never an exception', async (t) => {
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  t.teardown(() => { process.env.PATH = path; });
  const r = await buildLatestWireguardGo();
  // A binary built earlier is reused without Go; otherwise the reason names the missing toolchain.
  if (r.ok) t.match(r.bin, /wireguard-go-v/, 'the cached build');
  else t.match(r.reason, /no Go toolchain/);
});
