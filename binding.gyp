# node-gyp build of flanneld's one native addon: sd_notify over an AF_UNIX datagram socket
# (Node's dgram has no AF_UNIX). Output: build/Release/flanneld_native.node.
{
  "targets": [
    {
      "target_name": "flanneld_native",
      "sources": ["flanneld/native/sd-notify.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
