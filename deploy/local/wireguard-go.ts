// The two wireguard-go builds the project compares against, for the bench and for tests:
//  - Debian's (/usr/bin/wireguard-go from the wireguard-go package, installed by install-deps.sh), and
//  - the latest module, golang.zx2c4.com/wireguard at the version pinned in deploy/local/wireguard-go/go.mod
//    (a `tool` requirement, with its go.sum committed), built by go-tool.ts into deploy/local/wireguard-go/bin/.
// Neither is ever a failure: where a binary is missing or cannot be built, the caller gets the reason.
// To move the pin: `cd deploy/local/wireguard-go && go get -tool golang.zx2c4.com/wireguard@latest && go mod tidy`.
import { existsSync } from 'node:fs';
import { type GoTool, type GoToolBinary, buildGoTool, goToolDir, goToolOrSkip, pinnedVersionOf } from './go-tool.js';

export const WIREGUARD_GO_MODULE = 'golang.zx2c4.com/wireguard';
export const DEBIAN_WIREGUARD_GO = '/usr/bin/wireguard-go';
export const WIREGUARD_GO_TOOL: GoTool = { dir: 'wireguard-go', module: WIREGUARD_GO_MODULE, name: 'wireguard-go', cgo: false };

export type WireguardGoBinary = GoToolBinary;

/** deploy/local/wireguard-go, found from this file both under tsx (deploy/local) and compiled (dist/deploy/local). */
export function wireguardGoModuleDir(): string { return goToolDir(WIREGUARD_GO_TOOL.dir); }

/** The version of golang.zx2c4.com/wireguard required by a go.mod's text; undefined if it has none. */
export function pinnedVersionIn(goMod: string): string | undefined { return pinnedVersionOf(goMod, WIREGUARD_GO_MODULE); }

/** Debian's wireguard-go (the version install-deps.sh installs), or why it is not there. */
export function debianWireguardGo(): WireguardGoBinary {
  if (!existsSync(DEBIAN_WIREGUARD_GO)) {
    return { ok: false, reason: `${DEBIAN_WIREGUARD_GO} is missing: apt-get install wireguard-go (deploy/local/install-deps.sh)` };
  }
  return { ok: true, bin: DEBIAN_WIREGUARD_GO, version: 'debian' };
}

/** The pinned latest wireguard-go: the cached binary, or built now; or why not (no Go, no network to the module
 * proxy, a Go too old for the module). Concurrent calls share one build. */
export function buildLatestWireguardGo(): Promise<WireguardGoBinary> { return buildGoTool(WIREGUARD_GO_TOOL); }

/** The latest wireguard-go's path, building it if needed; undefined (and one line on stderr saying why) where
 * it cannot be had. */
export function latestWireguardGo(log?: (line: string) => void): Promise<string | undefined> {
  return goToolOrSkip(WIREGUARD_GO_TOOL, 'latest wireguard-go', log);
}
