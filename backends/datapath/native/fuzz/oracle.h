/* The fuzz oracle: what the engine writes or sends must carry the bytes it was given. Each input
 * packet is registered with whether the engine may pass it on (accepted) and whether it must
 * (clean); every output packet — after the kernel's GSO split and checksum completion, emulated
 * here — must have valid IPv4 and TCP/UDP checksums, fit the MTU, go to the right peer, and its
 * payload must be bytes of accepted inputs of its flow at the same sequence numbers (TCP), the same
 * datagram (UDP) or the same packet (anything else). At the end every clean input must have come
 * out whole, and the inputs that did not must be matched by counted drops. A violation prints
 * "ORACLE: ..." and aborts, so libFuzzer reports it as a crash. */
#ifndef FUZZ_ORACLE_H
#define FUZZ_ORACLE_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
  int vxlan, rx, vnet;
  uint32_t mtu;
} oracle_run;

void oracle_begin(const oracle_run *run);

/* RX: one datagram as sent to the engine (VXLAN header first in vxlan mode); `peer` is the sending
 * peer (-1: not a peer), `framing_ok` false when its message could be taken for something else,
 * `uso_mss` the GRO size it arrives with when it is a lone super-frame (0: none). */
void oracle_rx_input(const uint8_t *dgram, size_t len, int peer, size_t built_len, int framing_ok, size_t uso_mss);
/* TX: one device read (virtio_net_hdr first when vnet). */
void oracle_tx_input(const uint8_t *read, size_t len);

/* RX: one write to the device. TX: one datagram that peer `peer` received, or one device write (ICMP). */
void oracle_rx_output(const uint8_t *msg, size_t len);
void oracle_tx_output(int peer, const uint8_t *dgram, size_t len);
void oracle_tx_device_output(const uint8_t *msg, size_t len);

/* Checks that clean inputs all came out and that the missing ones are counted as drops. */
void oracle_end(uint64_t drops);
#endif
