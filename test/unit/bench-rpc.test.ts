// sockperf's summary as the bench reads it (ANSI colour codes and all, as sockperf 3.7 prints it), and the
// result schema for the rpc and idle samples.
import t from 'tap';
import { parseSockperf } from '../../bench/metrics/sockperf-rpc.js';
import { idleSeconds } from '../../bench/report/result-types.js';

const OUTPUT = `sockperf: [Total Run] RunTime=2.000 sec; Warm up time=400 msec; SentMessages=43958; ReceivedMessages=43957
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=1.550 sec; SentMessages=31102; ReceivedMessages=31102
sockperf: \x1b[2;35m====> avg-latency=49.814 (std-dev=19.556)\x1b[0m
sockperf: # dropped messages = 3; # duplicated messages = 0; # out-of-order messages = 0
sockperf: \x1b[2;35mTotal 31102 observations\x1b[0m; each percentile contains 311.02 observations
sockperf: ---> <MAX> observation = 2944.064
sockperf: ---> percentile 99.999 = 2944.064
sockperf: ---> percentile 99.990 =  900.926
sockperf: ---> percentile 99.900 =   96.270
sockperf: ---> percentile 99.000 =   72.076
sockperf: ---> percentile 90.000 =   52.036
sockperf: ---> percentile 75.000 =   49.922
sockperf: ---> percentile 50.000 =   49.162
sockperf: ---> percentile 25.000 =   48.350
sockperf: ---> <MIN> observation =   18.026
`;

t.test('parseSockperf reads the observations, the drops and p50/p99 in µs', async (t) => {
  t.same(parseSockperf(OUTPUT), { observations: 31102, dropped: 3, p50Us: 49.2, p99Us: 72.1 });
});

t.test('a run that printed no percentiles is an error that quotes its last lines', async (t) => {
  t.throws(() => parseSockperf('sockperf: ERROR: connect failed\nsockperf: exiting\n'), /sockperf printed no percentiles: .*exiting/);
});

t.test('the idle window is two iperf3 runs long, at least 3 s', async (t) => {
  t.equal(idleSeconds({ durationSec: 5 }), 10);
  t.equal(idleSeconds({ durationSec: 1 }), 3);
});
