// Entry point of the `flannel` CNI plugin binary (dist/cni/flannel): the config on stdin, the CNI_*
// variables in the environment, the result or a CNI error as JSON on stdout. Bundled into one file.
import { readFileSync } from 'node:fs';
import { runPlugin } from './plugin.js';

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch {
    return '';
  }
}

const result = runPlugin(process.env, readStdin(), (line) => process.stderr.write(`${line}\n`));
process.stdout.write(result.stdout);
process.exitCode = result.exitCode;
