#!/usr/bin/env python3
"""Seeds for fuzz-vxlan6.c (see its header for the input layout): a few well-formed flows that reach the
IPv6 offload paths (TCPv6 coalescing, TSO6 split, a Packet Too Big, USO), written to the directory given."""
import os, struct, sys


def rec(flags: int, n: int, nh: int, addrs: int, step: int, tcp_flags: int, last: int, payload: bytes = b"") -> bytes:
    payload = (payload + bytes(n))[:n]  # exactly n payload bytes: the next record follows them
    return bytes([flags]) + struct.pack("!H", n) + bytes([nh, addrs, step, tcp_flags, last]) + payload


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {
        # RX, offload, GRO: five contiguous TCP segments from A (fixed checksums), pumped at the end: coalesced
        "rx-coalesce": bytes([0x05]) + b"".join(rec(0x02, 1000, 0, 0, 0, 0x10, 0, bytes(range(256)) * 4) for _ in range(5)),
        # RX, offload, GRO, USO: four UDP datagrams of one flow: coalesced into one GSO_UDP_L4 write
        "rx-coalesce-udp": bytes([0x0d]) + b"".join(rec(0x02, 800, 1, 0, 0, 0, 0, bytes(range(200)) * 4) for _ in range(4)),
        # the same per-packet (no virtio headers)
        "rx-plain": bytes([0x00]) + b"".join(rec(0x02, 600, 0, 0, 0, 0x10, 0) for _ in range(3)),
        # TX, offload: a TSO6 read of 6000 bytes, gso_size 1200, to A; and to B (partial checksums)
        "tx-tso6": bytes([0x03]) + rec(0x43, 6000, 0, 4, 0, 0x18, 150) + rec(0x53, 6000, 0, 4, 0, 0x18, 150),
        # TX: a 1500-byte packet over an MTU of 1280 (Packet Too Big), offload and per-packet
        "tx-ptb": bytes([0x13]) + rec(0x03, 1460, 2, 4, 0, 0, 0, bytes([128]) + bytes(100)),
        "tx-ptb-plain": bytes([0x12]) + rec(0x03, 1460, 2, 4, 0, 0, 0, bytes([128]) + bytes(100)),
        # TX, USO: a UDP GSO read of 4000 bytes, gso_size 1000
        "tx-uso": bytes([0x0b]) + rec(0x83, 4008, 1, 4, 0, 0, 125),
        # RX: a super-frame of 5000 bytes (as a kernel peer's TSO6 over veth), offload and per-packet
        "rx-super": bytes([0x05]) + rec(0x02, 5000, 0, 0, 0, 0x10, 0),
        "rx-super-plain": bytes([0x00]) + rec(0x02, 5000, 0, 0, 0, 0x10, 0),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
