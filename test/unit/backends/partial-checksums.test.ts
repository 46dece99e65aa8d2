// The AcceptsPartialChecksums lease extension: what our leases say, and how a peer's BackendData is
// read (only a JSON true counts; flannel's own BackendData, malformed JSON and other values do not).
import t from 'tap';
import { acceptsPartialChecksums } from '../../../backends/datapath/partial-checksums.js';
import { encodeVxlanBackendData, parseVtepMac } from '../../../backends/vxlan/vxlan-config.js';

t.test('a vxlan lease: flannel\'s bytes, plus the field for a userspace VTEP only', async (t) => {
  t.equal(encodeVxlanBackendData(1, '0e:00:00:00:00:01'), '{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}', 'kernel VTEP: flannel\'s bytes');
  const ours = encodeVxlanBackendData(1, '0e:00:00:00:00:01', true);
  t.equal(ours, '{"VNI":1,"VtepMAC":"0e:00:00:00:00:01","AcceptsPartialChecksums":true}');
  t.equal(parseVtepMac(ours), '0e:00:00:00:00:01', 'the VtepMAC still parses');
  t.ok(acceptsPartialChecksums(ours));
});

t.test('reading a peer\'s BackendData', async (t) => {
  t.equal(acceptsPartialChecksums(undefined), false, 'udp lease of flannel (no BackendData)');
  t.equal(acceptsPartialChecksums('{"VNI":1,"VtepMAC":"0e:00:00:00:00:02"}'), false, 'vxlan lease of flannel');
  t.equal(acceptsPartialChecksums('{"AcceptsPartialChecksums":true}'), true, 'udp lease of flannel-ts');
  t.equal(acceptsPartialChecksums('{"acceptspartialchecksums":true}'), true, 'field names match case-insensitively, as Go reads them');
  for (const v of ['"true"', '1', 'false', 'null', '{}']) t.equal(acceptsPartialChecksums(`{"AcceptsPartialChecksums":${v}}`), false, `value ${v} is not true`);
  for (const bad of ['not json', '[]', 'null', 'true']) t.equal(acceptsPartialChecksums(bad), false, `malformed ${bad}`);
});
