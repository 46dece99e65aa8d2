// Passes tap's TAP output through and closes with the line CI reads: "N passed, N failed".
// Exit code: 1 when any test failed or no test ran.
let buf = '';
process.stdin.on('data', (d) => { buf += d; process.stdout.write(d); });
process.stdin.on('end', () => {
  const m = [...buf.matchAll(/^# \{ (.*) \}$/gm)].at(-1);
  const counts = Object.fromEntries((m?.[1] ?? '').split(', ').filter(Boolean).map((s) => s.split(': ')).map(([k, v]) => [k, Number(v)]));
  const pass = counts.pass ?? 0;
  const fail = (counts.fail ?? 0) + (m ? 0 : 1);
  const skip = (counts.skip ?? 0) + (counts.todo ?? 0);
  console.log(`tests: ${pass} passed, ${fail} failed, ${skip} skipped`);
  process.exitCode = fail > 0 || pass === 0 ? 1 : 0;
});
