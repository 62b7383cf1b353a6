// Who this browser is when authentication is off: a stable client id, a readable guest name and a colour, kept in
// localStorage so every tab of one browser is one member. With a token, the gateway takes the identity from it.

// Each has at least 4.5:1 contrast with white initials (WCAG AA).
const palette = ['#4338ca', '#0e7490', '#047857', '#b45309', '#b91c1c', '#be185d', '#6d28d9', '#1d4ed8', '#4d7c0f', '#c2410c'];

export interface Identity {
  clientId: string;
  name: string;
  color: string;
}

export function loadIdentity(): Identity {
  let clientId = localStorage.getItem('aistream.clientId');
  if (!clientId || !/^web-[a-z0-9]{12}$/.test(clientId)) {
    clientId = `web-${crypto.randomUUID().replace(/-/g, '').slice(0, 12)}`;
    localStorage.setItem('aistream.clientId', clientId);
  }
  let name = localStorage.getItem('aistream.name');
  if (!name) {
    name = `Guest ${1000 + (hash(clientId) % 9000)}`;
    localStorage.setItem('aistream.name', name);
  }
  return { clientId, name, color: colorOf(clientId) };
}

export function saveName(name: string): void {
  localStorage.setItem('aistream.name', name);
}

/** A member's colour: the one it chose, else one derived from its id (the same in every browser). */
export function colorOf(id: string, chosen?: string): string {
  return chosen && /^#[0-9a-fA-F]{6}$/.test(chosen) ? chosen : palette[hash(id) % palette.length]!;
}

/** Up to two initials of a name ("Ada Lovelace" → "AL", "sim" → "S"). */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter((w) => /\p{L}|\p{N}/u.test(w));
  const letters = words.length >= 2 ? [words[0]!, words[words.length - 1]!].map((w) => [...w][0]) : [...(words[0] ?? '?')].slice(0, 1);
  return letters.join('').toUpperCase();
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Black or white, whichever reads better on `background` (a member's own colour may be light). */
export function textOn(background: string): string {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const c = parseInt(background.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (1.05) / (luminance + 0.05) >= (luminance + 0.05) / 0.05 ? '#ffffff' : '#111111';
}
