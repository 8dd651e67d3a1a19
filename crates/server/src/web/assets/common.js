// Helpers both pages share. Text reaches the page only through textContent
// (el's `text`, or strings appended as text nodes): never innerHTML, so
// nothing a user or the server sends can become markup.

/** A new element: `props` sets attributes (`class`, `text`, `dataset`, `on*` handlers). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** The server's /api/info: its version, auth mode and whether the API needs a key. */
export async function serverInfo() {
  const answer = await fetch('/api/info', { cache: 'no-store' });
  if (!answer.ok) throw new Error(`the server answered ${answer.status}`);
  return answer.json();
}

/** JSON values kept for this tab (sessionStorage): they survive a reload, not the browser. */
export const tabStore = {
  get(key) {
    try {
      const text = sessionStorage.getItem(`switchboard.${key}`);
      return text === null ? null : JSON.parse(text);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      sessionStorage.setItem(`switchboard.${key}`, JSON.stringify(value));
    } catch {
      // Storage disabled or full: the page still works, it forgets on reload.
    }
  },
  remove(key) {
    try {
      sessionStorage.removeItem(`switchboard.${key}`);
    } catch {
      // As above.
    }
  },
};

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5 KiB". */
export function formatBytes(bytes) {
  let value = Number(bytes) || 0;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? Math.round(value) : value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

/** 93_000 -> "1 min 33 s". */
export function formatDuration(ms) {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** A small number that stays the same for a name: which of `count` colours it gets. */
export function colourIndex(name, count = 8) {
  let hash = 0;
  for (const char of String(name)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % count;
}
