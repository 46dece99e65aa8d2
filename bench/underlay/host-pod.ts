// Underlay mode's pod: a namespace behind this host's cni0 bridge (made here if missing, holding the
// subnet's .1), as the CNI bridge plugin wires one, with the data path's MTU. Removed with its veth.
import { createNetns, deleteNetns, ipIn } from '../../deploy/local/netns.js';
import { ipBatchOn } from '../lib/exec.js';

export interface HostPod {
  readonly ns: string;
  readonly ip: string;
  remove(): Promise<void>;
}

/** `gatewayCidr` is the subnet's first address with its length, e.g. 10.244.1.1/24. */
export async function addHostPod(tag: string, gatewayCidr: string, podIp: string, mtu: number): Promise<HostPod> {
  const [gw, len] = gatewayCidr.split('/') as [string, string];
  const created: string[] = [];
  const hadBridge = (await ipIn(undefined, ['-o', 'link', 'show', 'cni0']).catch(() => '')) !== '';
  const ns = `${tag}-pod`;
  const remove = async (): Promise<void> => {
    await deleteNetns(created);
    if (!hadBridge) await ipIn(undefined, ['link', 'del', 'cni0']).catch(() => '');
  };
  try {
    if (!hadBridge) {
      await ipBatchOn(undefined, ['link add cni0 type bridge', `addr add ${gatewayCidr} dev cni0`, 'link set cni0 up']);
    }
    await createNetns(ns, created);
    const hostEnd = `${tag}h`;
    await ipBatchOn(undefined, [
      `link add ${hostEnd} mtu ${mtu} type veth peer name eth0 mtu ${mtu} netns ${ns}`,
      `link set ${hostEnd} master cni0 up`,
    ]);
    await ipBatchOn(ns, [`addr add ${podIp}/${len} dev eth0`, 'link set eth0 up', `route add default via ${gw}`]);
  } catch (err) {
    await remove();
    throw err;
  }
  return { ns, ip: podIp, remove };
}
