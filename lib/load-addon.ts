// Loads one of our node-gyp addons from <package root>/build/Release, from the sources (tsx) and
// from dist/ alike. Nothing else in the tree knows where native code lives.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest ancestor of `from` holding a package.json. */
export function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export function loadAddon<T>(target: string): T {
  const path = join(findPackageRoot(dirname(fileURLToPath(import.meta.url))), 'build', 'Release', `${target}.node`);
  try {
    return createRequire(import.meta.url)(path) as T;
  } catch (err) {
    throw new Error(`cannot load native addon ${path}; run \`npm run build\``, { cause: err });
  }
}
