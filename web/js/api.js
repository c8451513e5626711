// REST calls to the page's own origin. Errors come back in one shape whichever way they
// failed: the server's NestJS-style body (`{ statusCode, message, code }`), or status 0
// when the request never got an answer.

import { SignedOut } from './session.js';

export class ApiError extends Error {
  constructor(status, body) {
    const message = body?.message ?? `request failed (${status})`;
    super(Array.isArray(message) ? message.join('; ') : String(message));
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }

  get code() {
    return this.body?.code ?? null;
  }

  /** Whether trying again later may succeed (no answer, a limit, or a server error). */
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }

  /** Seconds to wait, for a 429 (REST `Retry-After`, or `retryAfter` in a socket ack). */
  get retryAfter() {
    return Number(this.body?.retryAfter ?? this.body?.retry_after ?? 0) || 0;
  }
}

async function send(method, path, body, token) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { message: 'The server cannot be reached' });
  }
  return res;
}

async function parse(res) {
  const text = await res.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = { message: text.slice(0, 200) };
    }
  }
  if (!res.ok) {
    const retry = Number(res.headers.get('retry-after'));
    throw new ApiError(res.status, Number.isFinite(retry) && retry > 0 ? { ...body, retryAfter: retry } : body);
  }
  return body;
}

/** Sign-up or sign-in: the answer goes to `session`. */
export async function signIn(session, path, body) {
  const res = await send('POST', path, body);
  const answer = await parse(res);
  session.adopt(answer, Date.parse(res.headers.get('date')));
  return answer.user;
}

/** REST client that authenticates with `session`, renewing its token once on a 401. */
export class Api {
  constructor(session) {
    this.session = session;
  }

  async request(method, path, body) {
    const token = await this.session.fresh();
    let res = await send(method, path, body, token);
    if (res.status === 401) {
      await this.session.renew();
      res = await send(method, path, body, this.session.token);
      // Refused with a token just renewed: the session was revoked meanwhile.
      if (res.status === 401) {
        this.session.end('Your session has ended. Sign in again.');
        throw new SignedOut();
      }
    }
    return parse(res);
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body) {
    return this.request('POST', path, body);
  }

  put(path, body) {
    return this.request('PUT', path, body);
  }

  delete(path) {
    return this.request('DELETE', path);
  }
}

/** `path?key=value&...`, leaving out empty values. */
export function query(path, params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') q.set(key, String(value));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
