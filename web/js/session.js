// The signed-in device: its tokens, kept in localStorage so that a reload or another tab
// stays signed in, and their renewal (docs/auth.md). The access token lives 15 minutes; it
// is renewed a minute before it expires, and on any 401. A refresh token is single use and
// presenting a spent one revokes the device, so one renewal runs at a time across every tab
// of the origin, and a tab that finds a newer token in storage takes it instead of renewing.

const KEY = 'chatty.session';
/** Renew this long before the access token expires. */
const EARLY_MS = 60_000;
/** After a renewal failed for want of network, try again this much later. */
const RETRY_MS = 15_000;

/** The device is signed out: its session ended, was revoked, or its refresh token was refused. */
export class SignedOut extends Error {
  constructor(reason = 'signed out') {
    super(reason);
    this.name = 'SignedOut';
  }
}

function load() {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY));
    return stored?.refresh_token && stored?.user ? stored : null;
  } catch {
    return null;
  }
}

/** Runs `fn` holding the origin-wide renewal lock; Web Locks exist on secure origins only. */
function withLock(fn) {
  return navigator.locks ? navigator.locks.request('chatty-refresh', () => fn()) : fn();
}

export class Session extends EventTarget {
  #data = load();
  #renewing = null;
  #timer = 0;

  constructor() {
    super();
    // Another tab signed in, renewed or signed out: its tokens are this tab's too.
    window.addEventListener('storage', (e) => {
      if (e.key !== KEY && e.key !== null) return;
      const had = this.#data;
      this.#data = load();
      if (had && !this.#data) this.#signedOut('You signed out in another tab.');
      else if (had && this.#data && had.user.user_id !== this.#data.user.user_id) location.reload();
      else this.#schedule();
    });
    this.#schedule();
  }

  get active() {
    return this.#data !== null;
  }

  get user() {
    return this.#data?.user ?? null;
  }

  get token() {
    return this.#data?.access_token ?? null;
  }

  /**
   * Keeps the answer of a sign-up, sign-in or refresh. `serverDate` (the answer's Date
   * header) corrects for a client clock that is off: the expiry is kept in local time.
   */
  adopt(answer, serverDate) {
    const skew = Number.isFinite(serverDate) ? Date.now() - serverDate : 0;
    this.#data = {
      access_token: answer.access_token,
      refresh_token: answer.refresh_token,
      session_id: answer.session_id,
      user: answer.user ?? this.#data?.user,
      expires_local: Date.parse(answer.expires_at) + skew,
    };
    localStorage.setItem(KEY, JSON.stringify(this.#data));
    this.#schedule();
  }

  /** Forgets the tokens (the caller has revoked them, or the server has). */
  end(reason) {
    if (!this.#data) return;
    this.#data = null;
    localStorage.removeItem(KEY);
    this.#signedOut(reason);
  }

  /** An access token good for at least a minute, renewing first when needed. */
  async fresh() {
    if (!this.#data) throw new SignedOut();
    if (this.#data.expires_local - Date.now() < EARLY_MS) await this.renew();
    return this.token;
  }

  /** New tokens for the refresh token; concurrent callers share one renewal. */
  renew() {
    if (!this.#data) return Promise.reject(new SignedOut());
    const spent = this.#data.refresh_token;
    this.#renewing ??= withLock(() => this.#renew(spent)).finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  async #renew(spent) {
    const stored = load();
    if (!stored) {
      this.end('You were signed out.');
      throw new SignedOut();
    }
    if (stored.refresh_token !== spent) {
      this.#data = stored;
      this.#schedule();
      return;
    }
    const res = await fetch('/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: spent }),
    });
    if (res.status === 401) {
      this.end('Your session has ended. Sign in again.');
      throw new SignedOut();
    }
    if (!res.ok) throw new Error(`token renewal answered ${res.status}`);
    this.adopt(await res.json(), Date.parse(res.headers.get('date')));
  }

  #schedule() {
    clearTimeout(this.#timer);
    if (!this.#data) return;
    const wait = Math.max(1_000, this.#data.expires_local - Date.now() - EARLY_MS);
    this.#timer = setTimeout(() => {
      this.renew().catch((err) => {
        if (!(err instanceof SignedOut)) this.#timer = setTimeout(() => this.#schedule(), RETRY_MS);
      });
    }, wait);
  }

  #signedOut(reason) {
    clearTimeout(this.#timer);
    this.dispatchEvent(new CustomEvent('signedout', { detail: { reason } }));
  }
}
