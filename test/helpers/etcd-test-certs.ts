// A throw-away CA and the certificates of an etcd requiring mutual TLS on the local cluster's switch
// (UNDERLAY_GATEWAY and 127.0.0.1) and of its client (flanneld), made with openssl in `dir`: ca.crt,
// server.crt/.key and client.crt/.key, valid two days.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UNDERLAY_GATEWAY } from '../../deploy/local/topology.js';
import { runCommand } from '../../lib/run-command.js';

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const r = await runCommand('sh', ['-c', `cd "$0" && exec openssl "$@"`, dir, ...args]);
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
}

/** Writes the files and returns a path function for them (f('ca.crt'), …). */
export async function makeEtcdTestCerts(dir: string): Promise<(name: string) => string> {
  const f = (name: string): string => join(dir, name);
  writeFileSync(f('server.ext'), `subjectAltName=IP:${UNDERLAY_GATEWAY},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n`);
  writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  await openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=flannel-ts test CA');
  for (const who of ['server', 'client']) {
    await openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who === 'server' ? 'etcd' : 'flanneld'}`);
    await openssl(dir, 'x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.crt`, '-days', '2', '-extfile', `${who}.ext`);
  }
  return f;
}
