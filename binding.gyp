# node-gyp builds our two native addons (plain C over N-API):
#  - flanneld_native: sd_notify over an AF_UNIX datagram socket (Node's dgram has no AF_UNIX).
#  - flannel_datapath: TUN/TAP devices, UDP sockets and the packet loops of the udp, vxlan and wireguard
#    backends, and keyed BLAKE2s for WireGuard's handshake (mac.c). wireguard.c and mac.c use Node's own
#    libcrypto (EVP_*), exported by the node binary: not linked here.
# Output: build/Release/<target>.node.
{
  "targets": [
    {
      "target_name": "flanneld_native",
      "sources": ["flanneld/native/sd-notify.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "flannel_datapath",
      "sources": [
        "backends/datapath/native/src/addon.c",
        "backends/datapath/native/src/engine.c",
        "backends/datapath/native/src/adaptive.c",
        "backends/datapath/native/src/udp.c",
        "backends/datapath/native/src/vxlan.c",
        "backends/datapath/native/src/vxlan6.c",
        "backends/datapath/native/src/wireguard.c",
        "backends/datapath/native/src/peers.c",
        "backends/datapath/native/src/ipv4.c",
        "backends/datapath/native/src/ipv6.c",
        "backends/datapath/native/src/segment.c",
        "backends/datapath/native/src/offload_tx.c",
        "backends/datapath/native/src/offload_rx.c",
        "backends/datapath/native/src/csum.c",
        "backends/datapath/native/src/sys.c",
        "backends/datapath/native/src/devconf.c",
        "backends/datapath/native/src/mac.c"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
