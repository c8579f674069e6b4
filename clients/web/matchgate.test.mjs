// matchgate.js's frame handling and backoff without a browser (node --test clients/web/); the
// reconnect path runs in Chromium in tests/browser/client-reconnect.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULTS, backoffCeilingMs, classify } from './matchgate.js';

test('pushes, unknown pushes, gateway errors and garbage are told apart', () => {
  assert.deepEqual(classify('{"type":"MatchmakingQueued","ticketId":"t1"}'), {
    kind: 'push',
    push: { type: 'MatchmakingQueued', ticketId: 't1' },
  });
  assert.equal(classify('{"type":"MatchmakingBackfilled","ticketId":"t1"}').kind, 'unknown');
  for (const garbage of ['', 'hello', '[1]', 'null', '{"ticketId":"t"}', '{"type":7}', '{"type":"MatchmakingQueued"}',
    '{"type":"MatchmakingSucceeded","ticketId":"t","matchId":"m","port":"x"}']) {
    assert.equal(classify(garbage).kind, 'malformed', garbage);
  }
  assert.deepEqual(classify('{"message":"Internal server error","connectionId":"c"}'), {
    kind: 'gatewayError',
    message: 'Internal server error',
  });
});

test('the backoff doubles up to its cap', () => {
  const b = DEFAULTS.backoff;
  assert.deepEqual([0, 3, 6, 1000].map((n) => backoffCeilingMs(b, n)), [500, 4000, 30000, 30000]);
});
