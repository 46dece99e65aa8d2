// The DaemonSet's seed-net-conf init step: writes net-conf.json (from the ConfigMap) to <prefix>/config
// in etcd only if that key is absent (one guarded transaction), so the first node seeds a new cluster
// and a config already in etcd always wins. Takes --net-conf=FILE plus flanneld's etcd flags/env.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, exitCodeFor } from '../../flanneld/exit-codes.js';
import { parseFlags } from '../../flanneld/options.js';
import { FlannelError, errorMessage } from '../../lib/errors.js';
import { createEtcdClient } from '../../subnet/etcd/etcd-client.js';
import { parseNetworkConfig } from '../../subnet/network-config.js';

const RETRY_FOR_MS = 120_000;

function splitArgs(argv: readonly string[]): { netConf: string; rest: string[] } {
  const rest: string[] = [];
  let netConf = '';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--net-conf') netConf = argv[++i] ?? '';
    else if (arg.startsWith('--net-conf=')) netConf = arg.slice('--net-conf='.length);
    else rest.push(arg);
  }
  if (!netConf) throw new FlannelError('FLN_ERR_USAGE', 'usage: seed-net-conf --net-conf=FILE [--etcd-endpoints=… --etcd-prefix=… --etcd-cafile=… …]');
  return { netConf, rest };
}

function sameJson(a: string | null, b: string): boolean {
  try {
    return a !== null && JSON.stringify(JSON.parse(a)) === JSON.stringify(JSON.parse(b));
  } catch {
    return false;
  }
}

async function main(): Promise<number> {
  const { netConf, rest } = splitArgs(process.argv.slice(2));
  const flags = parseFlags(rest);
  const text = readFileSync(netConf, 'utf8');
  parseNetworkConfig(text, netConf);
  const key = `${flags['etcd-prefix'].replace(/\/+$/, '')}/config`;
  const client = createEtcdClient({
    endpoints: flags['etcd-endpoints'].split(',').map((s) => s.trim()),
    certFile: flags['etcd-certfile'], keyFile: flags['etcd-keyfile'], caFile: flags['etcd-cafile'],
    username: flags['etcd-username'], password: flags['etcd-password'],
  });
  try {
    for (const deadline = Date.now() + RETRY_FOR_MS; ;) {
      try {
        const res = await client.if(key, 'Version', '==', 0).then(client.put(key).value(text)).commit();
        if (res.succeeded) { console.log(`seed-net-conf: wrote ${key} from ${netConf}`); return EXIT.OK; }
        const current = await client.get(key).string();
        const same = sameJson(current, text);
        console.log(`seed-net-conf: left ${key} as it is (${same ? 'same as' : 'differs from'} ${netConf}): the ConfigMap only seeds a new cluster; change the config in etcd`);
        return EXIT.OK;
      } catch (err) {
        if (Date.now() > deadline) throw new FlannelError('FLN_ERR_ETCD_UNAVAILABLE', `cannot write ${key} to etcd: ${errorMessage(err)}`, { cause: err });
        console.error(`seed-net-conf: etcd: ${errorMessage(err)}; retrying`);
        await sleep(2000);
      }
    }
  } finally {
    client.close();
  }
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(`seed-net-conf: ${errorMessage(err)}`);
  return err instanceof FlannelError ? exitCodeFor(err.code) : EXIT.FAILURE;
});
// An open gRPC channel must not keep a finished init step alive.
setTimeout(() => process.exit(), 2000).unref();
