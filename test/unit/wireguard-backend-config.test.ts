// The wireguard backend's control-plane pieces, flannel's way: the Backend config keys with their
// defaults and checks, the lease's BackendData bytes, and the key file (/run/flannel/wgkey) created
// once, reused, and never silently replaced when damaged. The public key is checked against `wg pubkey`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULT_KEY_FILE, keyFilePath, loadOrCreateKey } from '../../backends/wireguard/key-file.js';
import { encodeWireGuardBackendData, parseWireGuardBackendData } from '../../backends/wireguard/lease-data.js';
import { keyToBase64 } from '../../backends/wireguard/protocol/keys.js';
import { parseWireGuardConfig } from '../../backends/wireguard/wireguard-config.js';

const PSK = Buffer.alloc(32, 7).toString('base64');

t.test('config: flannel\'s defaults', async (t) => {
  t.same(parseWireGuardConfig({ Type: 'wireguard' }), { listenPort: 51820, listenPortV6: 51821, mtu: 0, psk: undefined, persistentKeepaliveSec: 0, mode: 'separate' });
});

t.test('config: every key, matched case-insensitively as Go does', async (t) => {
  const c = parseWireGuardConfig({ Type: 'wireguard', listenport: 51000, ListenPortV6: 51001, MTU: 1400, psk: PSK, PersistentKeepaliveInterval: 25, Mode: 'auto' });
  t.same({ ...c, psk: c.psk?.toString('base64') }, { listenPort: 51000, listenPortV6: 51001, mtu: 1400, psk: PSK, persistentKeepaliveSec: 25, mode: 'auto' });
});

t.test('config: every problem at once, naming field, value and what is allowed; the PSK never echoed', async (t) => {
  const bad = () => parseWireGuardConfig({ Type: 'wireguard', ListenPort: 0, MTU: 100, PSK: 'not-a-key', PersistentKeepaliveInterval: '25s', Mode: 'fast' });
  t.throws(bad, { code: 'FLN_ERR_CONFIG_INVALID' });
  try {
    bad();
  } catch (err) {
    const m = (err as Error).message;
    t.match(m, /5 problems/);
    t.match(m, /Backend\.ListenPort.*0.*UDP port from 1 to 65535/);
    t.match(m, /Backend\.MTU.*100.*at least 148/);
    t.match(m, /Backend\.PSK.*base64 of 32 bytes/);
    t.match(m, /Backend\.PersistentKeepaliveInterval.*25s.*not "25s"/);
    t.match(m, /Backend\.Mode.*fast.*separate, auto, ipv4, ipv6/);
    t.notMatch(m, /not-a-key/, 'the PSK value is redacted');
  }
  t.throws(() => parseWireGuardConfig({ Mode: 'ipv6' }), { message: /Backend\.Mode.*"ipv6".*needs EnableIPv6/ }, 'Mode ipv6 without EnableIPv6 is a config error');
  t.equal(parseWireGuardConfig({ Mode: 'ipv6' }, { ipv6: true }).mode, 'ipv6', 'with EnableIPv6 it parses (the backend refuses it at start)');
});

t.test('lease BackendData: flannel\'s bytes, and a missing or zero Port means our own', async (t) => {
  const key = Buffer.alloc(32, 1);
  const b64 = key.toString('base64');
  t.equal(encodeWireGuardBackendData(key, 51820), `{"PublicKey":"${b64}","Port":51820}`);
  t.same(parseWireGuardBackendData(`{"PublicKey":"${b64}","Port":51999}`, 51820), { publicKey: key, port: 51999 });
  t.same(parseWireGuardBackendData(`{"PublicKey":"${b64}"}`, 51820), { publicKey: key, port: 51820 }, 'no Port (flannel before v0.26.6)');
  t.same(parseWireGuardBackendData(`{"publickey":"${b64}","port":0}`, 51000), { publicKey: key, port: 51000 }, 'Port 0, lower-case keys');
  for (const bad of [undefined, '', 'null', '[]', '{}', '{"PublicKey":"abc"}', '{"PublicKey":42}', `{"PublicKey":"${b64}"`]) {
    t.equal(parseWireGuardBackendData(bad, 51820), undefined, `no peer from ${String(bad)}`);
  }
});

t.test('key file: created 0400 in a 0755 directory, then reused; the public key is wg\'s', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-wgkey-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'run', 'flannel', 'wgkey');
  const old = process.umask(0o077);
  let first;
  try {
    first = loadOrCreateKey(path);
  } finally {
    process.umask(old);
  }
  t.ok(first.created, 'created');
  t.equal(statSync(path).mode & 0o777, 0o400, 'file 0400');
  t.equal(statSync(join(dir, 'run', 'flannel')).mode & 0o777, 0o755, 'directory 0755 under umask 077');
  t.equal(readFileSync(path, 'utf8'), keyToBase64(first.privateKey), 'base64 of the private key');
  const again = loadOrCreateKey(path);
  t.notOk(again.created, 'reused');
  t.same(again.privateKey, first.privateKey);
  t.same(again.publicKey, first.publicKey);
  const wg = spawnSync('wg', ['pubkey'], { input: readFileSync(path, 'utf8'), encoding: 'utf8' });
  if (wg.status === null || wg.error) t.comment('wg is missing (make deps installs wireguard-tools): public key not cross-checked');
  else t.equal(wg.stdout.trim(), keyToBase64(first.publicKey), '`wg pubkey` derives the same public key');
});

t.test('key file: a key written by wg genkey (trailing newline) is read; a damaged one is an error and is left alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-wgkey-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'wgkey');
  writeFileSync(path, `${Buffer.alloc(32, 9).toString('base64')}\n`);
  t.same(loadOrCreateKey(path).privateKey, Buffer.alloc(32, 9));
  writeFileSync(path, 'garbage\n');
  t.throws(() => loadOrCreateKey(path), { code: 'FLN_ERR_WG_KEY_FILE', message: new RegExp(`${path} is damaged.*delete it to make a new key`) });
  t.equal(readFileSync(path, 'utf8'), 'garbage\n', 'not replaced');
});

t.test('key file path: WIREGUARD_KEY_FILE overrides /run/flannel/wgkey', async (t) => {
  t.equal(keyFilePath({}), DEFAULT_KEY_FILE);
  t.equal(DEFAULT_KEY_FILE, '/run/flannel/wgkey');
  t.equal(keyFilePath({ WIREGUARD_KEY_FILE: '/etc/flannel/key' }), '/etc/flannel/key');
});
