// The BackendData of a wireguard lease, exactly flannel's: {"PublicKey":"<base64>","Port":51820}. A lease
// without Port, or with 0 (flannel before v0.26.6), means the peer listens on our own ListenPort.
import { parseJsonObject, pickFields } from '../../lib/json-fields.js';
import { keyFromBase64, keyToBase64 } from './protocol/keys.js';

export interface WireGuardPeerData {
  readonly publicKey: Buffer;
  readonly port: number;
}

export function encodeWireGuardBackendData(publicKey: Uint8Array, port: number): string {
  return `{"PublicKey":${JSON.stringify(keyToBase64(publicKey))},"Port":${port}}`;
}

/** A peer's key and port from its BackendData; undefined when the key is missing or malformed. */
export function parseWireGuardBackendData(backendData: string | undefined, ownPort: number): WireGuardPeerData | undefined {
  const raw = parseJsonObject(backendData);
  if (!raw) return undefined;
  const { PublicKey: key, Port: port } = pickFields(raw, ['PublicKey', 'Port']);
  if (typeof key !== 'string') return undefined;
  let publicKey: Buffer;
  try {
    publicKey = keyFromBase64(key);
  } catch {
    return undefined;
  }
  const valid = typeof port === 'number' && Number.isInteger(port) && port > 0 && port <= 65_535;
  return { publicKey, port: valid ? port : ownPort };
}
