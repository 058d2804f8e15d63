// What Gemini Live messages carry, read without decoding: durations, base64 audio sizes, MIME rates, errors.

const MAX_MESSAGE = 4096;

/** "12s", "1.5s", "500ms", {seconds, nanos} or a number of seconds → ms. */
export function durationToMs(d) {
  if (d == null) return undefined;
  if (typeof d === "number") return Math.max(0, d * 1000);
  if (typeof d === "object") {
    const s = Number(d.seconds || 0) + Number(d.nanos || 0) / 1e9;
    return Number.isFinite(s) ? Math.max(0, s * 1000) : undefined;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(String(d));
  if (!m) return undefined;
  const n = parseFloat(m[1]);
  const unit = m[2] || "s";
  return Math.round(unit === "ms" ? n : unit === "m" ? n * 60000 : n * 1000);
}

/** Decoded byte length of a base64 string, without decoding it. */
export function base64Bytes(b64) {
  if (typeof b64 !== "string" || !b64) return 0;
  const len = b64.replace(/[\s]/g, "").length;
  const pad = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor((len * 3) / 4) - pad);
}

export function byteLengthOf(data) {
  if (data == null) return 0;
  if (typeof data.byteLength === "number") return data.byteLength;
  if (typeof data.length === "number") return data.length;
  return 0;
}

export function sampleRateOf(mimeType, fallback) {
  const m = /rate=(\d+)/.exec(String(mimeType || ""));
  return m ? parseInt(m[1], 10) : fallback;
}

export function errorText(e) {
  if (e == null) return undefined;
  if (typeof e === "string") return e.slice(0, MAX_MESSAGE);
  if (e.message) return String(e.message).slice(0, MAX_MESSAGE);
  if (e.error && e.error.message) return String(e.error.message).slice(0, MAX_MESSAGE);
  try {
    return JSON.stringify(e).slice(0, MAX_MESSAGE);
  } catch (_) {
    return String(e).slice(0, MAX_MESSAGE);
  }
}
