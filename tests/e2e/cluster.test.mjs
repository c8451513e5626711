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

import { BASE, NODES, TIMEOUT_MS, connect, connected, createGroup, eventually, next, refused, register, request } from './lib.mjs';

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

test('clients behind the balancer survive a rolling restart of every node', { skip: !clusterCtl && 'CHATTY_CLUSTER_CTL is not set' }, async (t) => {
  // Arrange: a WebSocket client and a polling client through nginx, reconnecting as real
  // clients do
  const user = await register(BASE);
  const clients = [['websocket'], ['polling']].map((transports) => {
    const socket = io(BASE, { auth: { token: user.token }, transports, forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 1000 });
    t.after(() => socket.close());
    const drops = [];
    socket.on('disconnect', (reason) => drops.push(reason));
    return { socket, drops, transports };
  });
  await Promise.all(clients.map(({ socket }) => connected(socket)));

  // Act: SIGTERM each node in turn (it drains), wait for it to be ready again
  for (let k = 1; k <= NODES.length; k++) {
    await promisify(execFile)('bash', [clusterCtl, 'restart-node', String(k)], { timeout: 120_000 });
  }

  // Assert: each was dropped by its node's drain, came back, and works. A polling client
  // that failed over is moved once more when its node returns (the address hash sends it
  // home, where its new session is unknown), so it may need a second reconnect.
  for (const { socket, drops, transports } of clients) {
    assert.ok(drops.length >= 1, `the ${transports} client was never moved by a drain`);
    assert.ok(!drops.includes('io server disconnect'), `the ${transports} client was told not to reconnect: ${drops}`);
    const deadline = Date.now() + TIMEOUT_MS;
    let ack;
    while (!ack?.ok && Date.now() < deadline) {
      await eventually(() => socket.connected, `the ${transports} client to reconnect`, TIMEOUT_MS);
      ack = await request(socket, 'leaveConversation', randomUUID(), 2_000).catch((err) => ({ ok: false, err: String(err) }));
    }
    assert.equal(ack?.ok, true, `${transports}: ${JSON.stringify(ack)} after drops ${drops}`);
  }
});
