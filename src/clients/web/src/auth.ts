// The page's token when the gateway requires one: from the URL fragment (#token=…, removed from the address bar at
// once so a shared link never carries it), from the sign-in dialog, or from the host page (window.aistream.setToken,
// e.g. after its own login refreshed it). Kept in sessionStorage: per tab, gone when the tab closes.

import { jwtClaims, jwtExpiry } from '@aistream/client';

const KEY = 'aistream.token';

export interface Who {
  name: string;
  subject: string | undefined;
}

/**
 * Takes `token=` (or `access_token=`) from the fragment, read raw so a `+` in an API key stays a `+`. A link that would
 * replace a different token this tab is signed in with asks first: a link must not silently sign someone in as
 * somebody else.
 */
export function takeTokenFromFragment(fragment: string): boolean {
  const pair = fragment.split('&').find((p) => p.startsWith('token=') || p.startsWith('access_token='));
  if (!pair) return false;
  let token: string;
  try {
    token = decodeURIComponent(pair.slice(pair.indexOf('=') + 1)).trim();
  } catch {
    return true;
  }
  const current = currentToken();
  if (!token || token === current) return true;
  if (current) {
    const next = whoIs(token)?.name ?? 'another identity';
    if (!confirm(`This link signs you in as ${next}, replacing ${whoIs(current)?.name ?? 'your current sign-in'}. Continue?`)) return true;
  }
  sessionStorage.setItem(KEY, token);
  return true;
}

export function currentToken(): string | undefined {
  return sessionStorage.getItem(KEY) ?? undefined;
}

export function setToken(token: string): void {
  sessionStorage.setItem(KEY, token.trim());
}

export function clearToken(): void {
  sessionStorage.removeItem(KEY);
}

/** True when the token is a JWT past its expiry. */
export function isExpired(token: string | undefined): boolean {
  const exp = jwtExpiry(token);
  return exp !== undefined && exp <= Date.now();
}

/** Who a JWT says the caller is (its `name`, else `sub`); undefined for an API key. */
export function whoIs(token: string | undefined): Who | undefined {
  const claims = jwtClaims(token);
  if (!claims) return undefined;
  const subject = typeof claims.sub === 'string' ? claims.sub : undefined;
  return { name: typeof claims.name === 'string' ? claims.name : subject ?? 'signed in', subject };
}
