// clients/web/matchgate.js in a real browser, through its example page: a player whose socket is
// dropped in the middle of matchmaking (a @connections DELETE, as a network drop looks to the
// server) reconnects by herself and still sees her own match, once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, screenshot, serveFolder, startStack } from './harness.mjs';

test('a player dropped mid-matchmaking reconnects and sees her own match once', async (t) => {
  const stack = await startStack(['--auth', 'none']);
  const web = await serveFolder('clients/web');
  const { context, close } = await launchBrowser();
  // The pages first: a stack that shuts down under open pages sees them reconnect.
  t.after(async () => {
    await close();
    await web.stop();
    await stack.stop();
  });

  const open = async (player) => {
    const page = await context.newPage();
    await page.goto(`${web.url}/example.html?url=${encodeURIComponent(stack.websocketUrl)}&player=${player}`);
    await page.click('#play');
    await page.locator('#state', { hasText: 'Searching (ticket' }).waitFor();
    return page;
  };
  const alice = await open('alice');
  const ticket = (await alice.textContent('#state')).match(/ticket (\S+)\)/)[1];

  // Her connection ID, from the Pong the page logs; then the server drops her socket.
  await alice.evaluate(() => window.matchgateClient.ping());
  await alice.locator('#log', { hasText: '"type":"Pong"' }).waitFor();
  const connectionId = (await alice.textContent('#log')).match(/"connectionId":"([^"]+)"/)[1];
  const deleted = await fetch(`${stack.httpUrl}/@connections/${encodeURIComponent(connectionId)}`, { method: 'DELETE' });
  assert.equal(deleted.status, 204);
  await alice.locator('#log', { hasText: '"kind":"reconnected"' }).waitFor();
  assert.equal(await alice.evaluate(() => window.matchgateClient.liveTicket), ticket, 'the ticket survived the drop');

  // Bob asks; the two are matched, and Alice's page shows her own seat.
  const bob = await open('bob');
  await alice.locator('#result', { hasText: 'Matched:' }).waitFor();
  await bob.locator('#result', { hasText: 'Matched:' }).waitFor();
  await screenshot(alice, 'client-reconnect-alice');
  const aliceResult = await alice.textContent('#result');
  const bobResult = await bob.textContent('#result');
  assert.match(aliceResult, /^Matched: connect to \S+:\d+ as \S+ \(team \w+\)$/);
  assert.notEqual(aliceResult, bobResult, 'each player sees their own player session');
  assert.match(await alice.textContent('#state'), new RegExp(`Ticket ${ticket} matched`));
  // Asked again, the server repeats the result; the client does not report it twice.
  const after = await alice.evaluate(async () => {
    const client = window.matchgateClient;
    client.status();
    client.ping();
    const events = [];
    for (let e = await client.nextEvent(); e && !(e.kind === 'push' && e.push.type === 'Pong'); e = await client.nextEvent()) {
      events.push(e);
    }
    return events;
  });
  assert.deepEqual(after.filter((e) => e.push?.type === 'MatchmakingSucceeded'), [], 'the result is reported once');
});
