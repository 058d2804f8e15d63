// What the browser client needs of HTTP: body sizes, retryable statuses, Retry-After, lenient JSON bodies.

/** Fetch keepalive bodies and beacons share a 64 KiB budget in browsers. */
export const KEEPALIVE_LIMIT = 64 * 1024;

export const FATAL_STATUSES = new Set([401, 403, 404, 410]);

export function utf8Length(str) {
  if (typeof TextEncoder !== "undefined") return new TextEncoder().encode(str).length;
  return unescape(encodeURIComponent(str)).length;
}

export function isRetryableStatus(status) {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

/** Retry-After header (seconds or HTTP date) in ms, or null. */
export function parseRetryAfter(value, nowMs) {
  if (value == null || value === "") return null;
  const s = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(parseFloat(s) * 1000);
  const t = Date.parse(s);
  if (Number.isNaN(t)) return null;
  return Math.max(0, t - nowMs);
}

export function headerGet(res, name) {
  try {
    if (res && res.headers && typeof res.headers.get === "function") return res.headers.get(name);
    if (res && res.headers) return res.headers[name] ?? res.headers[name.toLowerCase()] ?? null;
  } catch (_) {
    /* ignore */
  }
  return null;
}

export async function readJson(res) {
  try {
    if (res && typeof res.json === "function") return await res.json();
    if (res && typeof res.text === "function") return JSON.parse(await res.text());
  } catch (_) {
    /* a body that is not JSON is not an error for us */
  }
  return null;
}
