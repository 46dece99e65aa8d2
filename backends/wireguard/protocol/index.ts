// The WireGuard v1 protocol core: messages, the Noise_IKpsk2 handshake, mac1/mac2 and cookies, transport
// encryption and the replay window. Pure functions and small state objects: no sockets, no timers, no logs.
export * from './constants.js';
export * from './errors.js';
export * from './keys.js';
export * from './kdf.js';
export * from './aead.js';
export * from './messages.js';
export * from './tai64n.js';
export * from './cookie.js';
export * from './replay-window.js';
export * from './transport.js';
export * from './noise-handshake.js';
