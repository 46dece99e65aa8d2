// The architecture, checked from the import statements of every source file:
//  - lib/ is the ground floor (IP arithmetic, errors, running a command, loading an addon): it imports no layer;
//  - subnet/ knows the stores and subnets, nothing of packets, the daemon, deploy or bench;
//  - backends/ sees leases only through backends/backend.ts;
//  - the packet path (the engine worker and the native addon's wrappers) imports nothing of the control plane;
//  - no daemon layer imports deploy/, bench/ or test/.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import t from 'tap';

const ROOT = new URL('../../', import.meta.url).pathname;
const LAYERS = ['lib', 'subnet', 'backends', 'flanneld', 'deploy', 'bench'] as const;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sources(rel));
    else if (/\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** The project files a source imports (relative specifiers only), as paths from the repository root. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g)]
    .map((m) => (m[1] ?? m[2]) as string);
  return specs.map((s) => normalize(join(dirname(file), s)));
}

const layerOf = (path: string): string => path.split('/')[0] as string;
const all = LAYERS.flatMap((l) => sources(l));
const graph = new Map(all.map((f) => [f, importsOf(f)]));

function violations(filter: (file: string) => boolean, allowed: (file: string, dep: string) => boolean): string[] {
  const bad: string[] = [];
  for (const [file, deps] of graph) {
    if (!filter(file)) continue;
    for (const dep of deps) if (!allowed(file, dep)) bad.push(`${file} imports ${dep}`);
  }
  return bad;
}

t.test('the import graph was read', async (t) => {
  t.ok(all.length > 100, `${all.length} source files`);
  t.ok([...graph.values()].flat().length > 300, 'with their imports');
  t.ok(graph.get('backends/backend.ts')?.some((d) => d.startsWith('subnet/')), 'backend.ts imports subnet/ (the one door)');
});

t.test('lib/ is the ground floor: it imports only lib/', async (t) => {
  t.same(violations((f) => layerOf(f) === 'lib', (_f, d) => layerOf(d) === 'lib'), []);
});

t.test('subnet/ imports only subnet/ and lib/', async (t) => {
  t.same(violations((f) => layerOf(f) === 'subnet', (_f, d) => ['subnet', 'lib'].includes(layerOf(d))), []);
});

t.test('backends/ sees subnet/ only through backends/backend.ts; never flanneld/, deploy/ or bench/', async (t) => {
  t.same(violations((f) => layerOf(f) === 'backends', (f, d) =>
    ['backends', 'lib'].includes(layerOf(d)) || (layerOf(d) === 'subnet' && f === 'backends/backend.ts')), []);
});

t.test('the packet path (engine worker, native addon wrappers) imports nothing of the control plane', async (t) => {
  const packetPath = (f: string): boolean => f.startsWith('backends/datapath/native/') || f === 'backends/datapath/engine.worker.ts';
  const seen = new Set<string>();
  const bad: string[] = [];
  const walk = (f: string, from: string): void => {
    if (seen.has(f)) return;
    seen.add(f);
    if (!['backends/datapath', 'lib'].some((p) => f.startsWith(`${p}/`))) bad.push(`${from} reaches ${f}`);
    for (const d of graph.get(f.replace(/\.js$/, '.ts')) ?? []) walk(d.replace(/\.js$/, '.ts'), f);
  };
  for (const f of all.filter(packetPath)) walk(f, f);
  t.ok(seen.has('backends/datapath/native/datapath-addon.ts') && seen.has('lib/load-addon.ts'), `the walk followed the worker's imports: ${[...seen].join(', ')}`);
  t.same(bad, []);
});

t.test('the daemon layers import no deploy/, bench/ or test/', async (t) => {
  t.same(violations((f) => ['lib', 'subnet', 'backends', 'flanneld'].includes(layerOf(f)), (_f, d) => !['deploy', 'bench', 'test'].includes(layerOf(d))), []);
});

t.test('a ground-floor primitive is imported from lib/, not reached for inside another layer', async (t) => {
  const primitives = ['lib/ip.ts', 'lib/errors.ts', 'lib/run-command.ts', 'lib/load-addon.ts'];
  for (const p of primitives) t.ok(graph.has(p), `${p} exists`);
  t.same(violations(() => true, (_f, d) => !/^(subnet\/(ip|errors)|backends\/kernel\/run-command|backends\/datapath\/native\/load-addon)\.js$/.test(d)), []);
  t.equal(relative(ROOT, join(ROOT, 'lib')), 'lib');
});
