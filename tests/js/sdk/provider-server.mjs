// A local server speaking a provider's realtime WebSocket protocol: it plays the conformance fixtures
// (tests/fixtures/providers/*.json) when the scenario says so, and records what the client sends.
// The official SDKs connect to it through their base-URL options.

import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";

const FIXTURES = fileURLToPath(new URL("../../fixtures/", import.meta.url));
const WAIT_MS = 20000;

export function loadFixture(name) {
  return JSON.parse(readFileSync(`${FIXTURES}providers/${name}.json`, "utf8"));
}

/** The test-only certificate the TLS variant serves (the `openai` package only speaks wss:). */
export function testCertificate() {
  return { cert: readFileSync(`${FIXTURES}tls/localhost.crt`), key: readFileSync(`${FIXTURES}tls/localhost.key`) };
}

/** `{"$pcm16_ms": n}` → n ms of 24 kHz mono PCM16 silence, base64; everything else as is. */
export function materialize(value) {
  if (Array.isArray(value)) return value.map(materialize);
  if (value && typeof value === "object") {
    if (typeof value.$pcm16_ms === "number") return Buffer.alloc(Math.round((24000 * 2 * value.$pcm16_ms) / 1000)).toString("base64");
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, materialize(v)]));
  }
  return value;
}

/** Polls `cond` until it holds; fails after a generous bound (never depends on the machine's speed). */
export async function until(cond, label, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export class Connection {
  constructor(ws, req, fixture) {
    this.ws = ws;
    this.path = req.url;
    this.headers = req.headers;
    this.fixture = fixture;
    this.received = [];
    this.closed = null;
    ws.on("message", (data) => {
      try {
        this.received.push(JSON.parse(data.toString()));
      } catch (_) {
        this.received.push({ unparsed: data.toString() });
      }
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
  }

  /** Sends one server message (materialized). */
  send(message) {
    this.ws.send(JSON.stringify(materialize(message)));
  }

  /** Sends a fixture sequence, in order. */
  play(name) {
    const seq = this.fixture.sequences[name];
    if (!seq) throw new Error(`no fixture sequence ${name}`);
    for (const m of seq) this.send(m);
  }

  /** The first client message matching `pred` (waits for it). */
  async waitFor(pred, label) {
    return until(() => this.received.find(pred), `client message: ${label}`);
  }

  close(code = 1000, reason = "") {
    this.ws.close(code, reason);
  }
}

export class ProviderServer {
  static async start({ fixture, tls = false }) {
    const s = new ProviderServer();
    s.fixture = typeof fixture === "string" ? loadFixture(fixture) : fixture;
    s.http = tls ? https.createServer(testCertificate()) : http.createServer();
    s.http.on("request", (req, res) => s._control(req, res));
    s.wss = new WebSocketServer({ server: s.http });
    s.connections = [];
    s.wss.on("connection", (ws, req) => s.connections.push(new Connection(ws, req, s.fixture)));
    await new Promise((resolve) => s.http.listen(0, "127.0.0.1", resolve));
    const port = s.http.address().port;
    const host = tls ? "localhost" : "127.0.0.1";
    s.httpUrl = `${tls ? "https" : "http"}://${host}:${port}`;
    s.wsUrl = `${tls ? "wss" : "ws"}://${host}:${port}`;
    return s;
  }

  /**
   * The control API a scenario running elsewhere (a browser page) drives the server with, as the node
   * scenarios do directly: GET /control/play?conn=0&seq=a,b, /control/wait?conn=0&type=T (answers the client
   * message), /control/send?conn=0&msg={json}. Simple GETs with CORS, so a page can call them.
   */
  async _control(req, res) {
    const u = new URL(req.url, "http://local");
    const reply = (status, body) => {
      res.writeHead(status, { "content-type": "application/json", "access-control-allow-origin": "*" });
      res.end(JSON.stringify(body));
    };
    try {
      const c = await this.connection(Number(u.searchParams.get("conn") || 0));
      if (u.pathname === "/control/play") {
        for (const name of (u.searchParams.get("seq") || "").split(",").filter(Boolean)) c.play(name);
        return reply(200, {});
      }
      if (u.pathname === "/control/wait") {
        const type = u.searchParams.get("type");
        return reply(200, await c.waitFor((m) => m.type === type, type));
      }
      if (u.pathname === "/control/send") {
        c.send(JSON.parse(u.searchParams.get("msg")));
        return reply(200, {});
      }
      return reply(404, { error: "unknown control path" });
    } catch (e) {
      return reply(500, { error: String(e && e.message) });
    }
  }

  /** The n-th connection (0-based), once it exists. */
  async connection(n) {
    return until(() => this.connections[n], `connection ${n + 1}`);
  }

  async stop() {
    for (const c of this.connections) c.ws.terminate();
    await new Promise((resolve) => this.wss.close(() => resolve()));
    await new Promise((resolve) => this.http.close(() => resolve()));
  }
}
