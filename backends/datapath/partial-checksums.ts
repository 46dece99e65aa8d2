// flannel-ts lease extension: a node whose packet engine accepts inner TCP checksums left partial
// (the pseudo-header sum only, as the kernel leaves them for offload) says so in its lease's
// BackendData with "AcceptsPartialChecksums": true. Our engines then split TSO super-packets for it
// without summing the payload; the receiving engine hands them to its device with NEEDS_CSUM, or
// completes them on its per-packet path. The outer UDP checksum, which our sockets always send,
// still covers every byte. flannel and kernel VXLAN nodes never set the field, so they always get
// complete inner checksums; flannel ignores fields it does not know.
import { parseJsonObject, pickFields } from '../../lib/json-fields.js';

export const PARTIAL_CHECKSUMS_FIELD = 'AcceptsPartialChecksums';

/** Whether a peer's BackendData (JSON text, as in the lease) advertises partial inner checksums. */
export function acceptsPartialChecksums(backendData: string | undefined): boolean {
  const raw = parseJsonObject(backendData);
  return raw !== undefined && pickFields(raw, [PARTIAL_CHECKSUMS_FIELD])[PARTIAL_CHECKSUMS_FIELD] === true;
}
