// The result files committed under bench/results/ (quoted by the README) still match the schema the
// harness checks its own output against, including files written before a field was added.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { validateResult } from '../../bench/report/result-schema.js';

const DIR = new URL('../../bench/results/', import.meta.url).pathname;
const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));

t.ok(files.length > 0, 'there are committed results');
for (const f of files) {
  t.same(validateResult(JSON.parse(readFileSync(join(DIR, f), 'utf8'))), [], `${f} matches the schema`);
}

t.test('a file from before machine CPU was measured still validates; one with a broken figure does not', async (t) => {
  const old = files.find((f) => !readFileSync(join(DIR, f), 'utf8').includes('machineCpuSecPerGB'));
  const recent = files.find((f) => readFileSync(join(DIR, f), 'utf8').includes('machineCpuSecPerGB'));
  t.ok(old && recent, 'both kinds are committed');
  const broken = JSON.parse(readFileSync(join(DIR, recent as string), 'utf8')) as { datapaths: Array<{ summary: Record<string, unknown> }> };
  const dp = broken.datapaths.find((d) => d.summary.machineCpuSecPerGB);
  if (dp) dp.summary.machineCpuSecPerGB = { median: 9, min: 1, max: 2, n: 3 };
  t.ok(validateResult(broken).some((p) => p.includes('machineCpuSecPerGB')), 'the new figure is checked when present');
});
