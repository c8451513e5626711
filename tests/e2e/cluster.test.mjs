// End-to-end tests of a running Chatty cluster with the official JavaScript client
// (socket.io-client v4), over WebSocket, HTTP long-polling, and polling upgraded to
// WebSocket through the balancer. tests/e2e/run.sh starts a local cluster and runs them;
// against another cluster: CHATTY_URL=<balancer> CHATTY_NODES=<node>,<node> node --test
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { io } from 'socket.io-client';

import { BASE, NODES, TIMEOUT_MS, api, connect, connected, createGroup, eventually, next, refused, register, request } from './lib.mjs';

const nodeA = NODES[0];
const nodeB = NODES[1 % NODES.length];

test('a socket that names only a userId is refused with a message about the token', async (t) => {
  const user = await register(BASE);
  for (const transports of [['websocket'], ['polling']]) {
    const err = await refused(connect(t, BASE, { auth: { userId: user.id }, transports }));
    assert.match(err.message, /token/i, `over ${transports}`);
  }
  const err = await refused(connect(t, BASE, { namespace: '/notifications', auth: { userId: user.id } }));
  assert.match(err.message, /token/i);
});

test('a socket with a garbage token is refused', async (t) => {
  const err = await refused(connect(t, BASE, { auth: { token: 'not-a-token' } }));
  assert.match(err.message, /malformed|token/i);
});

test('the notifications namespace greets every transport with notifications:connected', async (t) => {
  const user = await register(BASE);
  for (const transports of [['websocket'], ['polling'], undefined]) {
    const socket = connect(t, BASE, { namespace: '/notifications', auth: { token: user.token }, transports });
    const hello = next(socket, 'notifications:connected');
    await connected(socket);
    assert.deepEqual(await hello, { status: 'connected' }, `over ${transports ?? 'default transports'}`);
  }
});

test('a polling client behind the balancer upgrades to WebSocket and keeps its session', async (t) => {
  const user = await register(BASE);
  const socket = connect(t, BASE, { auth: { token: user.token } });
  await connected(socket);
  // The upgrade request carries the polling session's id: it only succeeds when the
  // balancer sent it to the node that made the session.
  await eventually(() => socket.io.engine?.transport?.name === 'websocket', 'the upgrade to websocket');
  const ack = await request(socket, 'leaveConversation', randomUUID());
  assert.equal(ack.ok, true, JSON.stringify(ack));
});

test('events about a conversation the user is not in are refused through the ack, and the socket lives', async (t) => {
  const user = await register(BASE);
  for (const transports of [['websocket'], ['polling']]) {
    const socket = connect(t, nodeB, { auth: { token: user.token }, transports });
    await connected(socket);
    const ack = await request(socket, 'typing', { conversationId: randomUUID(), isTyping: true });
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(ack.error.statusCode, 404, JSON.stringify(ack));
    assert.equal(socket.connected, true, `socket dropped over ${transports}`);
  }
});

test('typing on a polling client on one node reaches a WebSocket client on another', async (t) => {
  // Arrange
  const [alice, bob] = await Promise.all([register(BASE, 'alice'), register(BASE, 'bob')]);
  const conversationId = await createGroup(BASE, alice.token, `e2e typing ${randomUUID().slice(0, 8)}`, [bob.id]);
  const a = connect(t, nodeA, { auth: { token: alice.token }, transports: ['websocket'] });
  const b = connect(t, nodeB, { auth: { token: bob.token }, transports: ['polling'] });
  await Promise.all([connected(a), connected(b)]);
  for (const s of [a, b]) {
    const joined = await request(s, 'joinConversation', { conversationId });
    assert.equal(joined.ok, true, JSON.stringify(joined));
  }
  const heard = next(a, 'userTyping', (e) => e.userId === bob.id);

  // Act
  const ack = await request(b, 'typing', { conversationId, isTyping: true });

  // Assert
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.deepEqual(await heard, { userId: bob.id, conversationId, isTyping: true });
});

test('a message sent over WebSocket on one node reaches a polling client on another and a client behind the balancer', async (t) => {
  // Arrange: alice on node A over WebSocket, bob on node B over polling only, carol through
  // the balancer with the default transports (polling, then upgrade)
  const [alice, bob, carol] = await Promise.all([register(BASE, 'alice'), register(BASE, 'bob'), register(BASE, 'carol')]);
  const conversationId = await createGroup(BASE, alice.token, `e2e ${randomUUID().slice(0, 8)}`, [bob.id, carol.id]);
  const a = connect(t, nodeA, { auth: { token: alice.token }, transports: ['websocket'] });
  const b = connect(t, nodeB, { auth: { token: bob.token }, transports: ['polling'] });
  const c = connect(t, BASE, { auth: { token: carol.token } });
  await Promise.all([connected(a), connected(b), connected(c)]);
  assert.equal(b.io.engine.transport.name, 'polling');
  const content = `hello from e2e ${randomUUID()}`;
  const forBob = next(b, 'newMessage', (m) => m.content === content);
  const forCarol = next(c, 'newMessage', (m) => m.content === content);

  // Act
  const ack = await request(a, 'sendMessage', { content, conversation_id: conversationId, client_msg_id: randomUUID() });

  // Assert
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.ok(ack.data.message_id, JSON.stringify(ack));
  assert.equal(ack.data.seq, 1, JSON.stringify(ack));
  const [toBob, toCarol] = await Promise.all([forBob, forCarol]);
  assert.equal(toBob.message_id, ack.data.message_id);
  assert.equal(toCarol.message_id, ack.data.message_id);
});

// Needs control of the cluster: tests/e2e/run.sh sets CHATTY_CLUSTER_CTL to
// deploy/local/cluster.sh. Against another cluster it is skipped.
const clusterCtl = process.env.CHATTY_CLUSTER_CTL;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The highest seq such that every seq from 1 up to it is in `bySeq`. */
function contiguous(bySeq) {
  let seq = 0;
  while (bySeq.has(seq + 1)) seq += 1;
  return seq;
}

test('a rolling restart of every node under continuous traffic loses no message and leaves no ghost presence', { skip: !clusterCtl && 'CHATTY_CLUSTER_CTL is not set', timeout: 300_000 }, async (t) => {
  // Arrange: a group of a sender, a WebSocket receiver, a polling receiver and a user who
  // leaves mid-restart, every client through nginx and reconnecting as real clients do
  const [sender, wsUser, pollUser, leaver] = await Promise.all(
    ['sender', 'ws', 'poll', 'leaver'].map((p) => register(BASE, p)),
  );
  const conversationId = await createGroup(BASE, sender.token, `e2e rolling ${randomUUID().slice(0, 8)}`, [wsUser.id, pollUser.id, leaver.id]);
  const presenceTtlMs = Number(process.env.CHATTY_PRESENCE_TTL_MS ?? 30_000);
  const heard = []; // every userStatus any client received
  const clients = [];
  function client(label, user, transports) {
    const socket = io(BASE, { auth: { token: user.token }, transports, forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 1000, timeout: TIMEOUT_MS });
    t.after(() => socket.close());
    const c = { label, user, socket, drops: [], refusals: [], connects: 0 };
    socket.on('connect', () => { c.connects += 1; });
    socket.on('disconnect', (reason) => c.drops.push(reason));
    // The client only retries transport failures by itself; a node refusing the namespace
    // (it started draining between the handshake and the connect) needs a nudge.
    socket.on('connect_error', (err) => {
      c.refusals.push(err.message);
      if (!socket.active) setTimeout(() => socket.connect(), 200);
    });
    socket.on('userStatus', (e) => heard.push({ by: label, ...e }));
    clients.push(c);
    return c;
  }

  /** Keeps `newMessage`s by seq and, after every (re)connect, syncs from the last seq held without a gap. */
  function receiver(c) {
    Object.assign(c, { bySeq: new Map(), conflicts: [], syncs: 0, syncErrors: [] });
    const keep = (m) => {
      if (m.conversation_id !== conversationId) return;
      const had = c.bySeq.get(m.seq);
      if (!had) c.bySeq.set(m.seq, m);
      else if (had.message_id !== m.message_id) c.conflicts.push([had, m]);
    };
    c.socket.on('newMessage', keep);
    c.socket.on('connect', async () => {
      try {
        for (;;) {
          const ack = await request(c.socket, 'sync', { conversations: { [conversationId]: contiguous(c.bySeq) } }, 5_000);
          assert.equal(ack.ok, true, JSON.stringify(ack));
          const part = ack.data.conversations[conversationId];
          part.messages.forEach(keep);
          if (!part.has_more) break;
        }
        c.syncs += 1;
      } catch (err) {
        // Dropped again before the answer: the next connect syncs.
        c.syncErrors.push(String(err));
      }
    });
    return c;
  }

  const out = client('sender', sender, ['websocket']);
  const receivers = [receiver(client('ws', wsUser, ['websocket'])), receiver(client('poll', pollUser, ['polling']))];
  const leaving = [client('leaver-ws', leaver, ['websocket']), client('leaver-poll', leaver, ['polling'])];
  await Promise.all(clients.map(({ socket }) => connected(socket)));

  // One message at a time, sent whether or not the socket is connected (the client buffers
  // it); a send that fails or is not acknowledged within a second is sent again with the
  // same client_msg_id until it is, so the server must store each message exactly once.
  // Every 25th message also pretends its first answer was lost, as a drain can lose an
  // answer after the message was stored.
  const sent = [];
  const retries = [];
  let stop = false;
  const sending = (async () => {
    for (let i = 1; !stop; i++) {
      const payload = { content: `rolling ${i}`, conversation_id: conversationId, client_msg_id: randomUUID() };
      let lost;
      for (let attempt = 1; ; attempt++) {
        assert.ok(attempt <= 300, `message ${i} was never acknowledged; last answers: ${JSON.stringify(retries.slice(-3))}`);
        const ack = await request(out.socket, 'sendMessage', payload, 1_000).catch((err) => ({ ok: false, error: String(err) }));
        if (ack.ok && i % 25 === 0 && attempt === 1) {
          lost = ack.data;
          retries.push({ i, attempt, ack: 'answer ignored on purpose' });
          continue;
        }
        if (ack.ok) {
          if (lost) assert.deepEqual([ack.data.message_id, ack.data.seq], [lost.message_id, lost.seq], `message ${i}: the retry stored a second message`);
          sent.push({ ...payload, seq: ack.data.seq, message_id: ack.data.message_id, attempts: attempt });
          break;
        }
        retries.push({ i, attempt, ack });
        await sleep(100);
      }
      await sleep(25);
    }
  })().then(() => null, (err) => err);
  await eventually(() => sent.length >= 10, 'the first messages', TIMEOUT_MS);

  // Act: SIGTERM each node in turn (it drains), wait for it to be ready again; the leaver
  // closes both of its sockets after the first node is back
  for (let k = 1; k <= NODES.length; k++) {
    await promisify(execFile)('bash', [clusterCtl, 'restart-node', String(k)], { timeout: 120_000 });
    if (k === 1) for (const c of leaving) c.socket.close();
  }
  const restartedAt = Date.now();
  const before = sent.length;
  await eventually(() => sent.length >= before + 20, 'messages after the restart', 30_000);
  stop = true;
  const failed = await sending;
  if (failed) throw failed;

  // Assert: each message was stored once, with seqs 1..N in sending order
  const n = sent.length;
  assert.deepEqual(sent.map((m) => m.seq), Array.from({ length: n }, (_, i) => i + 1), 'acknowledged seqs');
  const stored = [];
  while (stored.length < n + 1) {
    const page = await api(BASE, 'GET', `/messages/conversation/${conversationId}?after_seq=${stored.length}&limit=200`, { token: sender.token });
    assert.equal(page.status, 200, JSON.stringify(page.body));
    if (page.body.length === 0) break;
    stored.push(...page.body);
  }
  assert.deepEqual(stored.map((m) => m.seq), sent.map((m) => m.seq), 'stored seqs');
  assert.deepEqual(stored.map((m) => m.client_msg_id), sent.map((m) => m.client_msg_id), 'one stored message per client_msg_id');
  assert.deepEqual(stored.map((m) => m.message_id), sent.map((m) => m.message_id), 'the acknowledged messages are the stored ones');
  // ... every receiver holds every seq exactly once, without gaps, from live events and syncs
  for (const r of receivers) {
    await eventually(() => r.bySeq.size >= n, `the ${r.label} receiver to hold all ${n} messages (has ${r.bySeq.size}, up to ${contiguous(r.bySeq)} without a gap)`, TIMEOUT_MS)
      .catch((err) => { throw new Error(`${err.message}; drops ${r.drops}, syncs ${r.syncs}, sync errors ${r.syncErrors}`); });
    assert.equal(contiguous(r.bySeq), n, `${r.label}: a gap`);
    assert.equal(r.bySeq.size, n, `${r.label}: seqs beyond the last message`);
    assert.deepEqual(r.conflicts, [], `${r.label}: one seq, two messages`);
    for (const m of sent) assert.equal(r.bySeq.get(m.seq).message_id, m.message_id, `${r.label}: seq ${m.seq}`);
    assert.ok(r.syncs >= 2, `${r.label}: synced ${r.syncs} times (errors: ${r.syncErrors})`);
  }
  // ... each long-lived client was moved by a drain and told to reconnect, never to go away
  for (const c of [out, ...receivers]) {
    assert.ok(c.drops.length >= 1, `the ${c.label} client was never moved by a drain`);
    assert.ok(!c.drops.includes('io server disconnect'), `the ${c.label} client was told not to reconnect: ${c.drops}`);
    await eventually(() => c.socket.connected, `the ${c.label} client to be connected`);
  }
  // ... and presence is right once every lease a drained node left behind has run out: the
  // leaver is offline, everyone still connected is online and never flapped offline
  const statusOf = async () => {
    const { status, body } = await api(BASE, 'GET', `/conversations/${conversationId}`, { token: sender.token });
    assert.equal(status, 200, JSON.stringify(body));
    return Object.fromEntries(body.participants.map((p) => [p.user_id, p.status]));
  };
  const leaseGone = presenceTtlMs + presenceTtlMs / 6 + 5_000;
  let statuses = await statusOf();
  const deadline = restartedAt + leaseGone;
  while (statuses[leaver.id] !== 'offline' && Date.now() < deadline) {
    await sleep(500);
    statuses = await statusOf();
  }
  assert.equal(statuses[leaver.id], 'offline', `the leaver closed every socket but is ${statuses[leaver.id]}`);
  await sleep(Math.max(0, deadline - Date.now()));
  statuses = await statusOf();
  assert.deepEqual(
    [sender, wsUser, pollUser, leaver].map((u) => statuses[u.id]),
    ['online', 'online', 'online', 'offline'],
    'presence of sender, ws, poll, leaver',
  );
  const flapped = heard.filter((e) => e.status === 'offline' && e.userId !== leaver.id);
  assert.deepEqual(flapped, [], 'connected users announced offline');
  assert.ok(retries.length >= 1, 'no send was retried');
  t.diagnostic(`${n} messages; retried sends: ${retries.length} (${retries.filter((r) => r.ack.ok === false).length} unanswered or failed); drops: ${clients.map((c) => `${c.label}=${c.drops.length}`).join(' ')}; refused connects: ${clients.reduce((a, c) => a + c.refusals.length, 0)}; syncs: ${receivers.map((r) => `${r.label}=${r.syncs}`).join(' ')}`);
});
