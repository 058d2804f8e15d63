// The demo's fake Gemini Live: a client shaped like live-api-web-console's GenAILiveClient that emits the
// messages Gemini Live sends, and the tiny event emitter it is built on. No network: DemoSession drives it.

// ---------------------------------------------------------------- a tiny EventEmitter (eventemitter3-like)

export class Emitter {
  constructor() {
    this._listeners = new Map();
  }
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push(fn);
    return this;
  }
  off(event, fn) {
    const list = this._listeners.get(event);
    if (list) {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    }
    return this;
  }
  removeListener(event, fn) {
    return this.off(event, fn);
  }
  once(event, fn) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      fn(...args);
    };
    return this.on(event, wrapped);
  }
  emit(event, ...args) {
    const list = this._listeners.get(event);
    if (!list || !list.length) return false;
    for (const fn of [...list]) fn(...args);
    return true;
  }
}

function base64ToArrayBuffer(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

/** base64 of `ms` of PCM16 mono audio at `rate` Hz (a quiet 220 Hz tone). */
export function pcmChunk(ms, rate = 24000) {
  const samples = Math.round((rate * ms) / 1000);
  let bin = "";
  for (let i = 0; i < samples; i++) {
    const v = Math.round(Math.sin((2 * Math.PI * 220 * i) / rate) * 800) & 0xffff;
    bin += String.fromCharCode(v & 0xff, v >> 8);
  }
  return btoa(bin);
}

// ---------------------------------------------------------------- the fake model

/**
 * Shaped like live-api-web-console's GenAILiveClient: same events, same `connect(model, config)`,
 * `disconnect()`, `sendToolResponse()`, `getConfig()`, and an `onmessage` instance method that `connect()`
 * captures, dispatching server messages the same way (audio parts → "audio", other parts → "content",
 * interrupted, turnComplete, toolCall, toolCallCancellation, setupComplete; the rest is not surfaced).
 */
export class FakeGenAILiveClient extends Emitter {
  constructor(options = {}) {
    super();
    this._status = "disconnected";
    this._model = null;
    this.config = null;
    this.session = null;
    this.toolResponses = [];
    this._defer = options.defer || ((fn) => Promise.resolve().then(fn));
    this.onopen = this.onopen.bind(this);
    this.onerror = this.onerror.bind(this);
    this.onclose = this.onclose.bind(this);
    this.onmessage = this.onmessage.bind(this);
  }
  get status() {
    return this._status;
  }
  get model() {
    return this._model;
  }
  getConfig() {
    return { ...this.config };
  }

  async connect(model, config) {
    if (this._status === "connected" || this._status === "connecting") return false;
    this._status = "connecting";
    this._model = model;
    this.config = config;
    // Like the SDK, the callbacks are taken when connecting.
    const callbacks = { onopen: this.onopen, onmessage: this.onmessage, onerror: this.onerror, onclose: this.onclose };
    await this._defer(() => {});
    this.session = new FakeLiveSession(callbacks, this);
    this._status = "connected";
    callbacks.onopen();
    this.session.serverSend({ setupComplete: {} });
    return true;
  }

  disconnect(reason = "") {
    if (!this.session) return false;
    const session = this.session;
    this.session = null;
    this._status = "disconnected";
    session.close(1000, reason);
    return true;
  }

  onopen() {
    this.emit("open");
  }
  onerror(e) {
    this.emit("error", e);
  }
  onclose(e) {
    this.emit("close", e);
  }

  onmessage(message) {
    if (message.setupComplete) {
      this.emit("setupcomplete");
      return;
    }
    if (message.toolCall) {
      this.emit("toolcall", message.toolCall);
      return;
    }
    if (message.toolCallCancellation) {
      this.emit("toolcallcancellation", message.toolCallCancellation);
      return;
    }
    const sc = message.serverContent;
    if (sc) {
      if ("interrupted" in sc) {
        this.emit("interrupted");
        return;
      }
      if ("turnComplete" in sc) this.emit("turncomplete");
      if ("modelTurn" in sc) {
        const parts = (sc.modelTurn && sc.modelTurn.parts) || [];
        const audio = parts.filter((p) => p.inlineData && String(p.inlineData.mimeType || "").startsWith("audio/pcm"));
        const other = parts.filter((p) => !audio.includes(p));
        for (const p of audio) if (p.inlineData.data) this.emit("audio", base64ToArrayBuffer(p.inlineData.data));
        if (other.length) this.emit("content", { modelTurn: { parts: other } });
      }
    }
  }

  sendToolResponse(toolResponse) {
    if (toolResponse && toolResponse.functionResponses && toolResponse.functionResponses.length) {
      this.toolResponses.push(toolResponse);
      if (this.session) this.session.receiveToolResponse(toolResponse);
    }
  }
  sendRealtimeInput() {}
  send() {}
}

/** The server end of one fake WebSocket. */
class FakeLiveSession {
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.open = true;
    this._toolWaiters = [];
  }
  serverSend(message) {
    if (this.open) this.callbacks.onmessage(message);
  }
  close(code, reason) {
    if (!this.open) return;
    this.open = false;
    this.callbacks.onclose({ type: "close", code, reason, wasClean: true });
  }
  receiveToolResponse(tr) {
    const waiters = this._toolWaiters;
    this._toolWaiters = [];
    for (const w of waiters) w(tr);
  }
  nextToolResponse() {
    return new Promise((resolve) => this._toolWaiters.push(resolve));
  }
}
