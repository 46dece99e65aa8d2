// The packet engine's C sources, for the tests that compile them outside node-gyp (the hardening and
// TX-batch tests, the fuzzer): every file binding.gyp builds into the addon but the N-API glue and the
// syscall setup, and the library they need outside node (wireguard.c uses libcrypto, which inside node
// comes from the node binary itself).
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const NATIVE = new URL('../../backends/datapath/native/', import.meta.url).pathname;
export const ENGINE = ['offload_tx.c', 'offload_rx.c', 'csum.c', 'engine.c', 'adaptive.c', 'udp.c', 'vxlan.c', 'vxlan6.c', 'wireguard.c', 'peers.c', 'ipv4.c', 'ipv6.c', 'segment.c'];
export const ENGINE_LIBS = ['-lcrypto'];

/** The engine sources found in `srcDir` (an older tree may lack the newer files). */
export function engineSources(srcDir = join(NATIVE, 'src')): string[] {
  return ENGINE.map((f) => join(srcDir, f)).filter((p) => existsSync(p));
}
