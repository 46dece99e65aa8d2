#!/usr/bin/env python3
"""Writes a seed corpus for fuzz-datapath.c into the given folder, in the structure-aware input
layout of fuzz/README.md (a run header, flows, segments): TSO/USO super-packets and plain packets
to peers of every prefix length, GRO trains and tunnel super-frames from them, with GSO, USO, GRO
or virtio headers off, so the fuzzer starts deep in every loop. The bug seeds are in fuzz/crashes/."""
import os, struct, sys

TCP, UDP, ICMP = 0, 2, 3
VALID, PARTIAL, BAD, ZERO = 0, 1, 2, 3


def header(nflows, vxlan=0, rx=0, vnet=1, gso=1, uso=1, gro=1, mtu=0, two_fds=0, no_check=0):
    b0 = vxlan | rx << 1 | (not vnet) << 2 | (not gso) << 3 | (not uso) << 4 | (not gro) << 5 | mtu << 6
    return bytes([b0, two_fds | no_check << 1, nflows - 1])


def flow(peer=0, proto=TCP, csum=VALID, tcp_words=0, doff=None, flags=0, ttl=64, tos=0, src=5, dst=9,
         ip_words=0, mf=0, df=1, outside_src=0, outside_dst=0, bad_l2=0, xor_at=0, xor_val=0, xor_after=0, seed=1):
    b1 = tcp_words if doff is None else 0x80 | (doff & 15) << 3 | tcp_words
    return bytes([peer | proto << 2 | outside_src << 4 | outside_dst << 5 | bad_l2 << 6 | df << 7,
                  b1, csum | ip_words << 2 | mf << 4 | flags << 5, ttl, tos, src, dst,
                  xor_at | xor_after << 7, xor_val, seed])


def seg(f, length, train=0, pump=0, push=0, retransmit=0, flip=0, kind=0, mss=0):
    """flip: RX a corrupted payload, TX a NEEDS_CSUM packet. kind: TX 0/1 plain, 2 GSO, 3 raw virtio
    fields; RX bit 0 a super-frame sent as UDP GSO, bit 1 from a stranger. length | 0x8000: RX super-frame."""
    return bytes([f | train << 3 | pump << 4 | push << 5 | retransmit << 6 | flip << 7]) + struct.pack("!H", length) + bytes([kind, mss])


def seeds():
    s = {}
    # TX: super-packets split for peers of each prefix length (/24, /16, /28, /32), complete and partial checksums
    s["tx-udp-tso"] = header(4) + flow(0) + flow(1, seed=2) + flow(2, dst=0x13, seed=3) + flow(3, seed=4) + \
        seg(0, 20000, kind=2) + seg(1, 9000, kind=2) + seg(2, 3000, kind=2, mss=100) + seg(3, 1400, kind=2) + seg(0, 40000, kind=2, pump=1)
    s["tx-vxlan-tso"] = header(2, vxlan=1) + flow(0) + flow(2, dst=0x13) + seg(0, 30000, kind=2) + seg(1, 5000, kind=2)
    s["tx-udp-uso"] = header(2) + flow(0, proto=UDP) + flow(1, proto=UDP, seed=5) + seg(0, 5000, kind=2, mss=125) + seg(1, 900, kind=2, mss=50)
    s["tx-vxlan-uso"] = header(1, vxlan=1) + flow(3, proto=UDP) + seg(0, 12000, kind=2, mss=150)
    s["tx-udp-plain"] = header(4) + flow(0) + flow(1, proto=UDP) + flow(0, proto=ICMP) + flow(0, outside_dst=1) + \
        seg(0, 1000) + seg(0, 1000, flip=1) + seg(1, 500) + seg(1, 500, flip=1) + seg(2, 64) + seg(3, 100)
    s["tx-plain-no-vnet"] = header(2, vnet=0) + flow(0) + flow(2, proto=UDP, dst=0x13) + seg(0, 1400) + seg(1, 1400) + seg(0, 10)
    s["tx-vxlan-no-vnet"] = header(2, vxlan=1, vnet=0) + flow(1) + flow(0, bad_l2=1) + seg(0, 1400) + seg(1, 10)
    s["tx-unsegmented"] = header(2, two_fds=1, no_check=1) + flow(0) + flow(1, seed=7) + seg(0, 20000, kind=2) + seg(1, 8000, kind=2)
    s["tx-no-gso"] = header(1, gso=0, mtu=3) + flow(0, tcp_words=2) + seg(0, 6000, kind=2)
    s["tx-raw-virtio"] = header(2) + flow(0) + flow(1, proto=UDP) + seg(0, 3000, kind=3 | 1 << 2, mss=200) + seg(1, 3000, kind=3 | 4 << 2, mss=100)
    # RX: GRO trains, coalesced across messages of one step, from peers of each prefix length
    s["rx-udp-train"] = header(2, rx=1) + flow(0) + flow(1, src=7, seed=3) + \
        seg(0, 1000) + seg(0, 1000, train=1) + seg(0, 1000, train=1) + seg(0, 1000) + seg(1, 500) + seg(1, 500, train=1) + seg(0, 400, push=1)
    s["rx-udp-partial"] = header(1, rx=1) + flow(2, csum=PARTIAL, src=0x1a) + seg(0, 1200) + seg(0, 1200, train=1) + seg(0, 1200, train=1)
    s["rx-udp-uso-train"] = header(1, rx=1) + flow(3, proto=UDP) + seg(0, 1000) + seg(0, 1000, train=1) + seg(0, 600, train=1)
    s["rx-vxlan-train"] = header(2, rx=1, vxlan=1) + flow(0) + flow(1, proto=UDP) + \
        seg(0, 1300) + seg(0, 1300, train=1) + seg(0, 1300) + seg(1, 800) + seg(1, 800, train=1)
    s["rx-vxlan-super"] = header(2, rx=1, vxlan=1) + flow(0) + flow(1, proto=UDP, csum=PARTIAL) + \
        seg(0, 0x8000 | 5000, kind=1, mss=175) + seg(1, 0x8000 | 4000, kind=1, mss=125) + seg(0, 0x8000 | 3000)
    s["rx-plain-no-vnet"] = header(2, rx=1, vnet=0) + flow(0) + flow(1, csum=PARTIAL) + seg(0, 1000) + seg(0, 1000) + seg(1, 0x8000 | 4000)
    s["rx-vxlan-no-vnet"] = header(1, rx=1, vxlan=1, vnet=0) + flow(2, src=0x1c) + seg(0, 0x8000 | 6000) + seg(0, 1000)
    s["rx-drops"] = header(4, rx=1) + flow(0, csum=BAD) + flow(1, outside_src=1) + flow(3, ttl=1) + flow(0, proto=UDP, csum=ZERO) + \
        seg(0, 100) + seg(1, 100) + seg(2, 100) + seg(3, 100) + seg(0, 100, kind=2) + seg(3, 200, flip=1)
    s["rx-gro-off"] = header(1, rx=1, gro=0, uso=0) + flow(0) + seg(0, 1000) + seg(0, 1000, train=1) + seg(0, 1000, train=1)
    return s


def main(out):
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


main(sys.argv[1])
