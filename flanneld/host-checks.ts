// Start-up checks of host settings that silently break an overlay. flannel exits when
// br_netfilter is missing; we warn instead, since a host without Kubernetes bridges does not need it.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';

async function readSysctl(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').then((s) => s.trim(), () => undefined);
}

export async function checkHostSysctls(log: Logger): Promise<void> {
  if ((await readSysctl('/proc/sys/net/ipv4/ip_forward')) !== '1') {
    log.warn('net.ipv4.ip_forward is not 1: this node will not forward pod traffic; run `sysctl -w net.ipv4.ip_forward=1`');
  }
  if ((await readSysctl('/proc/sys/net/bridge/bridge-nf-call-iptables')) === undefined) {
    log.warn('br_netfilter is not loaded (no /proc/sys/net/bridge/bridge-nf-call-iptables): Kubernetes services on bridged pods need `modprobe br_netfilter`');
  }
}
