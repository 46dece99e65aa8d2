#!/usr/bin/env python3
"""Writes a seed corpus for fuzz-datapath.c into the given folder: well-formed TX super-packets with
virtio headers, RX datagrams, GRO trains and VXLAN frames, so the fuzzer starts deep in the code."""
import os, struct, sys

def csum(b: bytes) -> int:
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def ip4(src, dst, proto, payload, ttl=64, ident=1):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, ttl, proto, 0, bytes(src), bytes(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

def tcp(src, dst, seq, payload, flags=0x10):
    hdr = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 1, 5 << 4, flags, 65535, 0, 0)
    pseudo = bytes(src) + bytes(dst) + struct.pack("!BBH", 0, 6, len(hdr) + len(payload))
    c = csum(pseudo + hdr + payload)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload

def udp(src, dst, payload):
    hdr = struct.pack("!HHHH", 40000, 7100, 8 + len(payload), 0)
    pseudo = bytes(src) + bytes(dst) + struct.pack("!BBH", 0, 17, len(hdr) + len(payload))
    return hdr[:6] + struct.pack("!H", csum(pseudo + hdr + payload)) + payload

POD_A, POD_B = [10, 244, 1, 2], [10, 244, 2, 2]
ETH = b"\x0e\x00\x00\x00\x00\x02" + b"\x0e\x00\x00\x00\x00\x01" + b"\x08\x00"  # to peer 0, from us
ETH_IN = b"\x0e\x00\x00\x00\x00\x01" + b"\x0e\x00\x00\x00\x00\x02" + b"\x08\x00"
VXLAN = b"\x08\0\0\0\0\0\x01\0"

def vnet(gso_type=0, gso_size=0, hdr_len=0, flags=0, start=0, off=0):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, start, off)

def main(out):
    os.makedirs(out, exist_ok=True)
    seeds = {}
    big = ip4(POD_A, POD_B, 6, tcp(POD_A, POD_B, 1000, bytes(range(256)) * 16))
    seeds["tx-udp-gso"] = b"\x00\0\0" + vnet(1, 1400, 40, 1, 20, 16) + big
    seeds["tx-udp-single"] = b"\x00\0\0" + vnet() + ip4(POD_A, POD_B, 6, tcp(POD_A, POD_B, 1, b"hello"))
    seeds["tx-vxlan-gso"] = b"\x01\0\0" + vnet(1, 1400, 54, 1, 34, 16) + ETH + big
    segs = [ip4(POD_B, POD_A, 6, tcp(POD_B, POD_A, 1 + i * 1000, bytes([i]) * 1000), ident=i) for i in range(3)]
    train = b"".join(s.ljust(1040, b"\0") for s in segs)
    seeds["rx-udp-train"] = bytes([0x02]) + struct.pack("!H", 1040) + train
    seeds["rx-udp-single"] = b"\x02\0\0" + segs[0]
    vsegs = [VXLAN + ETH_IN + s for s in segs]
    seeds["rx-vxlan-train"] = bytes([0x03]) + struct.pack("!H", len(vsegs[0])) + b"".join(vsegs)
    seeds["rx-vxlan-super"] = b"\x03\0\0" + VXLAN + ETH_IN + ip4(POD_B, POD_A, 6, tcp(POD_B, POD_A, 1, bytes(5000)))
    # USO: a UDP GSO read (gso type 5, datagrams of 1000 bytes), a train of consecutive datagrams of one
    # flow (coalesced for the device), and a kernel peer's UDP GSO super-frame (gso size 1000)
    seeds["tx-udp-uso"] = b"\x00\0\0" + vnet(5, 1000, 28, 1, 20, 6) + ip4(POD_A, POD_B, 17, udp(POD_A, POD_B, bytes(range(250)) * 12))
    dgrams = [ip4(POD_B, POD_A, 17, udp(POD_B, POD_A, bytes([i]) * 1000), ident=i) for i in range(3)]
    seeds["rx-udp-uso-train"] = bytes([0x02]) + struct.pack("!H", len(dgrams[0])) + b"".join(dgrams)
    seeds["rx-vxlan-uso-super"] = bytes([0x03]) + struct.pack("!H", 1000) + VXLAN + ETH_IN + ip4(POD_B, POD_A, 17, udp(POD_B, POD_A, bytes(3500)))
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

main(sys.argv[1])
