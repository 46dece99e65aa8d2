// Unit test of bench/cli/options.ts: the default result prefix never overwrites an earlier run of the
// same day, an explicit --out is taken as given, bad flags are usage errors, and the default data paths
// (the real flannel's, the wireguard and the IPv6 rows included) are the ones the help text lists.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freshPrefix, parseOptions, USAGE, UsageError } from '../../bench/cli/options.js';
import { DATAPATH_IDS } from '../../bench/report/result-types.js';

t.test('freshPrefix: the prefix, then -2, -3 while any of its three files exists', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-options-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const prefix = join(dir, '2026-11-22');
  t.equal(freshPrefix(prefix), prefix, 'nothing there yet');
  writeFileSync(`${prefix}.json`, '{}');
  t.equal(freshPrefix(prefix), `${prefix}-2`, 'a run of the day exists');
  writeFileSync(`${prefix}-2.svg`, '<svg/>');
  t.equal(freshPrefix(prefix), `${prefix}-3`, 'any one of .json, .txt, .svg makes a prefix taken');
  writeFileSync(`${prefix}-3.txt`, 'table');
  t.equal(freshPrefix(prefix), `${prefix}-4`);
});

t.test('parseOptions: --out is taken as given; the default is a fresh prefix of the date', async (t) => {
  t.equal(parseOptions(['--out=/tmp/x/run'])?.out, '/tmp/x/run');
  const today = new Date('2031-01-02T03:04:05Z');
  t.match(parseOptions([], today)?.out, /bench\/results\/2031-01-02$/, 'no run of that day yet');
  t.match(parseOptions(['--quick'], today)?.out, /bench\/results\/2031-01-02-quick$/);
  t.throws(() => parseOptions(['--warp=9']), UsageError);
});

t.test('parseOptions: every row by default, the real flannel\'s after ours, then the wireguard rows, the IPv6 rows last; --help names each of them', async (t) => {
  t.same(parseOptions([])?.datapaths, [
    'raw', 'kernel-vxlan', 'host-gw', 'flannel-host-gw', 'tun-relay', 'udp', 'flannel-udp', 'vxlan', 'vxlan-kernel', 'flannel-vxlan',
    'wireguard', 'wireguard-go-latest', 'wireguard-go-debian',
    'kernel-vxlan6', 'host-gw6', 'flannel-host-gw6', 'vxlan6', 'vxlan-kernel6', 'flannel-vxlan6', 'wireguard6',
  ]);
  t.same(parseOptions(['--quick'])?.datapaths, [...DATAPATH_IDS], '--quick measures the same rows');
  for (const id of DATAPATH_IDS) t.match(USAGE, new RegExp(`[ ,]${id}[,\\s]`), `--help names ${id}`);
  t.notMatch(USAGE, /only when named|opt-in/, 'no row is opt-in any more');
});

t.test('parseOptions: --rpc-rate paces the rpc metric; back to back by default; a negative rate is refused', async (t) => {
  t.equal(parseOptions([])?.rpcRate, 0, 'back to back by default');
  t.equal(parseOptions(['--rpc-rate=1000'])?.rpcRate, 1000);
  t.throws(() => parseOptions(['--rpc-rate=-5']), UsageError);
  t.match(USAGE, /--rpc-rate=N/, '--help names it');
});
