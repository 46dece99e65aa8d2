// Writes `count` keys of `bytes` bytes each under `prefix`, one revision each, then prints the etcd
// revision as JSON. Used to make a stalled watcher fall behind etcd (its stream fills up), so that a
// compaction then ends that watch with a compacted response: etcd's own slow-watcher path.
// Usage: node etcd-flood.mjs <endpoint> <prefix> <count> <bytes>
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(fileURLToPath(import.meta.url));
const { Etcd3 } = require('etcd3');
const [endpoint, prefix, count, bytes] = process.argv.slice(2);
const client = new Etcd3({ hosts: [endpoint] });
const value = 'x'.repeat(Number(bytes));
let revision = '0';
for (let i = 0; i < Number(count); i++) {
  const res = await client.put(`${prefix}${i}`).value(value).exec();
  revision = res.header.revision;
}
client.close();
console.log(JSON.stringify({ revision }));
