// A fake peer for the lease→first-packet benchmark: a real namespace on the underlay (a third node)
// that answers for a subnet nobody leased, wired back to the daemon's node by hand, plus the lease
// value that announces it. host-gw needs a route back; vxlan a kernel VTEP with the daemon as its peer.
import type { LocalCluster } from '../../deploy/local/local-cluster.js';
import { ipIn } from '../../deploy/local/netns.js';
import type { NodeHost } from '../../deploy/local/topology.js';
import { addVtepPeer, createVtep, linkMtu, randomVtepMac, VTEP_DEV } from '../datapaths/kernel-vxlan.js';

export interface FakePeer {
  readonly host: NodeHost;
  /** Makes the peer answer on <subnet>.1 and returns the lease value that announces <subnet>. */
  serve(subnet: string): Promise<string>;
}

const networkOf = (cidr: string): string => cidr.replace(/\.\d+\/(\d+)$/, '.0/$1');

/** `daemonSubnet` is the FLANNEL_SUBNET of the node whose pod probes (e.g. 10.244.96.1/24). */
export async function createFakePeer(kind: 'host-gw' | 'vxlan', cluster: LocalCluster, daemonNode: NodeHost, daemonSubnet: string): Promise<FakePeer> {
  const host = await cluster.topo.addNode();
  const daemonNet = networkOf(daemonSubnet);
  const answerOn = async (subnet: string): Promise<void> => {
    await ipIn(host.ns, ['addr', 'add', `${subnet.split('/')[0]?.replace(/\.0$/, '.1')}/32`, 'dev', 'lo']);
  };
  if (kind === 'host-gw') {
    await ipIn(host.ns, ['route', 'replace', daemonNet, 'via', daemonNode.underlayIp, 'dev', 'eth0']);
    return {
      host,
      serve: async (subnet) => {
        await answerOn(subnet);
        return JSON.stringify({ PublicIP: host.underlayIp, PublicIPv6: null, BackendType: 'host-gw' });
      },
    };
  }
  const daemonLease = await cluster.etcd.get(`${cluster.prefix}/subnets/${daemonNet.replace('/', '-')}`);
  const data = (JSON.parse(daemonLease ?? '{}') as { BackendData?: { VNI?: number; VtepMAC?: string } }).BackendData;
  if (!data?.VtepMAC) throw new Error(`the lease of ${daemonNet} has no BackendData.VtepMAC: ${daemonLease ?? '(missing)'}`);
  const mac = randomVtepMac();
  let first = true;
  return {
    host,
    serve: async (subnet) => {
      const vtepIp = subnet.split('/')[0] as string;
      if (first) {
        const extMtu = await linkMtu(host.ns, 'eth0');
        await createVtep({ ns: host.ns, localIp: host.underlayIp, extIface: 'eth0', extMtu, mac, address: vtepIp });
        await addVtepPeer(host.ns, { subnet: daemonNet, mac: data.VtepMAC as string, publicIp: daemonNode.underlayIp });
        first = false;
      } else {
        await ipIn(host.ns, ['addr', 'add', `${vtepIp}/32`, 'dev', VTEP_DEV]);
      }
      await answerOn(subnet);
      return JSON.stringify({ PublicIP: host.underlayIp, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: data.VNI ?? 1, VtepMAC: mac } });
    },
  };
}
