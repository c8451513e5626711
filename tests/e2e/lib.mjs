// Helpers of the end-to-end tests: REST calls with fetch, and socket.io-client sockets that
// settle into promises. Plain Node (>= 18), no test framework beyond node:test.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';

/** The balancer of the cluster (deploy/local/cluster.sh: nginx on 8080). */
export const BASE = process.env.CHATTY_URL ?? 'http://127.0.0.1:8080';

/** Direct node URLs, to put clients on different nodes on purpose. */
export const NODES = (process.env.CHATTY_NODES ?? 'http://127.0.0.1:3101,http://127.0.0.1:3102,http://127.0.0.1:3103')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

export const TIMEOUT_MS = 10_000;

/** A JSON request; returns the status and the parsed body (or the raw text). */
export async function api(base, method, path, { token, body } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(new URL(path, base), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (an nginx error page, say): keep the text for the assertion message.
  }
  return { status: res.status, body: parsed };
}

/** A fresh user: `{ token, id, username }`. */
export async function register(base, prefix = 'e2e') {
  const username = `${prefix}_${randomUUID().slice(0, 8)}`;
  const { status, body } = await api(base, 'POST', '/auth/register', {
    body: { username, email: `${username}@example.com`, password: `password-${username}` },
  });
  assert.equal(status, 201, `register ${username}: ${JSON.stringify(body)}`);
  return { token: body.access_token, id: body.user.user_id, username };
}

/** A group conversation of the caller and `participantIds`; returns its id. */
export async function createGroup(base, token, name, participantIds) {
  const { status, body } = await api(base, 'POST', '/conversations', {
    token,
    body: { name, is_group: true, participant_ids: participantIds },
  });
  assert.ok(status === 201 || status === 200, `POST /conversations answered ${status}: ${JSON.stringify(body)}`);
  assert.ok(body?.conversation_id, `no conversation_id in ${JSON.stringify(body)}`);
  return body.conversation_id;
}

/**
 * A socket on `namespace` of `base`. No automatic reconnection: a test must see a refusal
 * or a drop, not have it papered over. `t.after` closes it when the test ends.
 */
export function connect(t, base, { namespace = '/', auth, transports } = {}) {
  const socket = io(new URL(namespace, base).toString(), {
    auth,
    ...(transports ? { transports } : {}),
    reconnection: false,
    forceNew: true,
    timeout: TIMEOUT_MS,
  });
  t.after(() => socket.close());
  return socket;
}

/** Resolves on `connect`, rejects with the server's reason on `connect_error`. */
export function connected(socket) {
  if (socket.connected) return Promise.resolve(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(err));
  });
}

/** The `connect_error` of a socket the server must refuse. */
export function refused(socket) {
  return new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error('the server accepted a connection it must refuse')));
    socket.once('connect_error', (err) => resolve(err));
  });
}

/**
 * The first `event` whose payload satisfies `accept`. Call it before the action that
 * causes the event, so an early event is not missed.
 */
export function next(socket, event, accept = () => true, timeoutMs = TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, onEvent);
      reject(new Error(`no ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    function onEvent(payload) {
      if (!accept(payload)) return;
      clearTimeout(timer);
      socket.off(event, onEvent);
      resolve(payload);
    }
    socket.on(event, onEvent);
  });
}

/** Emits with an acknowledgement and returns it (`{ ok, data }` or `{ ok: false, error }`). */
export function request(socket, event, payload, timeoutMs = TIMEOUT_MS) {
  return socket.timeout(timeoutMs).emitWithAck(event, payload);
}

/** Waits until `predicate()` holds, polling. */
export async function eventually(predicate, what, timeoutMs = TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
