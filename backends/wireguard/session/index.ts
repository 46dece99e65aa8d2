// The WireGuard session layer: handshakes, timers and keypair publication for the C data path.
export * from './wg-table.js';
export * from './handshake-queue.js';
export * from './sessions.js';
export * from './session-stats.js';
export * from './session-timers.js';
export { INITIATION_MIN_INTERVAL_MS } from './peer-session.js';
export { LoadDetector, UNDER_LOAD_THRESHOLD } from './load-detector.js';
export { SourceRateLimiter, RATE_BURST, RATE_PER_SECOND } from './rate-limiter.js';
