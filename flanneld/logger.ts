// The daemon's one pino logger: JSON lines on stderr (flannel logs to stderr), ISO time, string
// levels, secrets redacted. Components get child loggers passed in, never a global.
import { pino, type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { svc: 'flanneld' },
    redact: { paths: ['password', '*.password', 'etcd-password', '*["etcd-password"]'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, pino.destination({ dest: 2, sync: true }));
}
