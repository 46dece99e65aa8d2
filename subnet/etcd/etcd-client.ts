// Builds the etcd v3 client from flannel's etcd flags: endpoints, TLS client certificates, basic auth.
// Fault handling is tuned so that an etcd outage fails calls fast and recovers within seconds.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConsecutiveBreaker, circuitBreaker, handleWhen, retry } from 'cockatiel';
import { Etcd3, type IOptions, isRecoverableError } from 'etcd3';
import { FlannelError } from '../../lib/errors.js';

export interface EtcdConnectOptions {
  readonly endpoints: readonly string[];
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly caFile?: string;
  readonly username?: string;
  readonly password?: string;
  /** Deadline of one unary call. */
  readonly callTimeoutMs?: number;
}

export function createEtcdClient(o: EtcdConnectOptions): Etcd3 {
  const callTimeoutMs = o.callTimeoutMs ?? 5000;
  const options: IOptions = {
    hosts: [...o.endpoints],
    dialTimeout: callTimeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    grpcOptions: {
      // Detect a silently dead connection (no FIN, no RST) within ~15 s; etcd allows pings every 5 s.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      // grpc's default reconnect backoff grows to 120 s; after a long outage that would keep us away
      // from a recovered etcd past a short lease TTL.
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 5_000,
    },
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 2 }),
    },
  };
  const tls = tlsCredentials(o);
  if (tls) options.credentials = tls;
  if (o.username) options.auth = { username: o.username, password: o.password ?? '' };
  return new Etcd3(options);
}

function tlsCredentials(o: EtcdConnectOptions): IOptions['credentials'] {
  if (!o.certFile && !o.keyFile && !o.caFile) return undefined;
  if (!o.certFile !== !o.keyFile) {
    throw new FlannelError('FLN_ERR_USAGE', '--etcd-certfile and --etcd-keyfile must be given together for TLS client authentication');
  }
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new FlannelError('FLN_ERR_USAGE', `${flag}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  // Without --etcd-cafile, grpc verifies the server against the system's trusted roots.
  const rootCertificate = o.caFile ? read('--etcd-cafile', o.caFile) : (null as unknown as Buffer);
  if (!o.certFile || !o.keyFile) return { rootCertificate };
  const privateKey = read('--etcd-keyfile', o.keyFile);
  const certChain = read('--etcd-certfile', o.certFile);
  checkKeyPair(o.certFile, certChain, o.keyFile, privateKey);
  return { rootCertificate, privateKey, certChain };
}

// The checks below turn what grpc would report as a bare OpenSSL error (or a crash) into a usage error
// naming the flag and the file. They never quote the files: a key's content must not reach the log.

function parseCertificate(flag: string, path: string, pem: Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new FlannelError('FLN_ERR_USAGE', `${flag}: ${path} is not a PEM certificate`);
  }
}

function checkKeyPair(certPath: string, certPem: Buffer, keyPath: string, keyPem: Buffer): void {
  const cert = parseCertificate('--etcd-certfile', certPath, certPem);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw new FlannelError('FLN_ERR_USAGE', `--etcd-keyfile: ${keyPath} is not an unencrypted PEM private key`);
  }
  if (!cert.checkPrivateKey(key)) {
    throw new FlannelError('FLN_ERR_USAGE', `--etcd-keyfile: the key in ${keyPath} does not belong to the certificate in --etcd-certfile ${certPath}`);
  }
}
