// @openai/agents-realtime's WebRTC transport (the browser default) in a real page, against a local peer: a
// second RTCPeerConnection in this page stands in for OpenAI's media server. It answers the SDP offer the SDK
// posts to the calls endpoint (that one HTTP exchange is answered here, since the service cannot run) and
// plays the fixture's WebRTC sequences on the "oai-events" data channel; media and data really go over
// WebRTC (ICE on loopback, DTLS, SCTP). The adapter is attached as README.md shows. Sets window.result.

import { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession } from "/sdk/@openai/agents-realtime/dist/bundle/openai-realtime-agents.mjs";
import { VoiceTrace } from "/static/voice-trace.js";
import { attachOpenAIRealtime } from "/static/adapters/openai-realtime.js";

const CALLS_URL = "https://realtime.invalid/v1/realtime/calls";

const until = async (cond, label) => {
  const deadline = Date.now() + 20000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** An audio track without a microphone (or a speaker): a tone through WebAudio. */
function toneTrack() {
  const ctx = new AudioContext();
  const dest = ctx.createMediaStreamDestination();
  const osc = ctx.createOscillator();
  osc.connect(dest);
  osc.start();
  return dest.stream;
}

class LocalRealtimePeer {
  constructor(sequences) {
    this.sequences = sequences;
    this.received = [];
    this.channel = null;
    this.pc = new RTCPeerConnection();
    this.pc.ondatachannel = (e) => {
      this.channel = e.channel;
      this.channel.onmessage = (m) => {
        const msg = JSON.parse(m.data);
        this.received.push(msg);
        if (msg.type === "session.update") this.play("session_updated");
      };
      this.channel.onopen = () => this.play("session_created");
    };
  }

  async answer(offerSdp) {
    await this.pc.setRemoteDescription({ type: "offer", sdp: offerSdp });
    for (const track of toneTrack().getAudioTracks()) this.pc.addTrack(track);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await until(() => this.pc.iceGatheringState === "complete", "ICE gathering");
    return this.pc.localDescription.sdp;
  }

  play(name) {
    for (const m of this.sequences[name]) this.channel.send(JSON.stringify(m));
  }
}

async function run() {
  const fixture = await (await fetch("/fixtures/providers/openai-realtime.json")).json();
  const peer = new LocalRealtimePeer(fixture.sequences);
  const realFetch = window.fetch.bind(window);
  const offers = [];
  window.fetch = async (url, init) => {
    if (String(url) !== CALLS_URL) return realFetch(url, init);
    offers.push(init.body);
    const sdp = await peer.answer(init.body);
    return new Response(sdp, { status: 201, headers: { "Content-Type": "application/sdp", Location: "/v1/realtime/calls/call_local_1" } });
  };

  const recorded = [];
  const problems = [];
  // The events are checked here, as recorded; they go nowhere (the WebSocket page tests the gateway path).
  const trace = VoiceTrace.fromToken({
    gatewayUrl: "http://gateway.invalid",
    sessionId: "webrtc-1",
    token: "t",
    pageLifecycle: false,
    fetch: async () => new Response('{"accepted":0,"duplicates":0,"rejected":[]}', { status: 202 }),
    onEvent: (e) => recorded.push(e),
    onError: (e) => problems.push(`${e.kind}: ${e.message}`),
  });
  const count = (type) => recorded.filter((e) => e.type === type).length;

  const agent = new RealtimeAgent({ name: "Assistant", instructions: "You are a helpful voice assistant." });
  const transport = new OpenAIRealtimeWebRTC({ baseUrl: CALLS_URL, mediaStream: toneTrack(), useInsecureApiKey: true });
  const session = new RealtimeSession(agent, { transport, model: "gpt-realtime" });
  session.on("error", () => {});
  const tracer = attachOpenAIRealtime(session, trace);
  await session.connect({ apiKey: "sk-test-key" });

  peer.play("turn1_user");
  peer.play("webrtc_turn1_answer");
  await until(() => count("model.playback_end") === 1, "turn 1 played out");
  peer.play("turn2_user");
  peer.play("webrtc_turn2_answer");
  await until(() => count("model.turn_complete") === 2, "turn 2");
  peer.play("webrtc_barge_in");
  await until(() => count("model.interrupted") === 1, "barge-in");
  session.close();
  await until(() => count("connection.close") === 1, "close");
  await trace.end("completed");
  return {
    problems,
    offers: offers.length,
    iceState: peer.pc.iceConnectionState,
    clientSent: peer.received.map((m) => m.type),
    events: recorded.map(({ id: _i, seq: _s, ts: _t, ...rest }) => rest),
    warnings: tracer.state.warnings || [],
  };
}

run().then(
  (r) => (window.result = r),
  (e) => (window.failure = String((e && e.stack) || e)),
);
