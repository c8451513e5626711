// The sign-in screen: sign in with a username or email, or create an account.

import { signIn } from './api.js';
import { byId, errorText, tabs } from './dom.js';

export class SignInView {
  /** `onSignedIn(user)` runs once the session holds the new tokens. */
  constructor(session, onSignedIn) {
    this.root = byId('signin');
    this.error = byId('signin-error');
    this.select = tabs(this.root.querySelector('[role=tablist]'), () => {
      this.error.textContent = '';
    });
    this.#form(byId('login-form'), (data) => {
      const login = data.get('login').trim();
      const body = { password: data.get('password') };
      if (login.includes('@')) body.email = login;
      else body.username = login;
      return signIn(session, '/auth/login', body);
    }, onSignedIn);
    this.#form(byId('register-form'), (data) => signIn(session, '/auth/register', {
      username: data.get('username').trim(),
      email: data.get('email').trim(),
      password: data.get('password'),
    }), onSignedIn);
  }

  show(message = '') {
    this.root.hidden = false;
    this.error.textContent = message;
    this.root.querySelector('[role=tabpanel]:not([hidden]) input')?.focus();
  }

  hide() {
    this.root.hidden = true;
    for (const form of this.root.querySelectorAll('form')) form.reset();
  }

  #form(form, submit, done) {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      this.error.textContent = '';
      if (!form.reportValidity()) return;
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        done(await submit(new FormData(form)));
      } catch (err) {
        this.error.textContent = err.status === 0 ? 'The server cannot be reached. Try again.' : errorText(err);
      } finally {
        button.disabled = false;
      }
    });
  }
}
