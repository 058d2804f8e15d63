// @openai/agents-realtime's browser bundle in a real page: a RealtimeSession over its WebSocket transport
// to the local provider server, traced with the gateway's client and adapter exactly as README.md shows.
// Query: ?gateway=<gateway url>&provider=<provider server http url>&ws=<its ws url>. Sets window.result.

import { OpenAIRealtimeWebSocket, RealtimeAgent, RealtimeSession, tool } from "/sdk/@openai/agents-realtime/dist/bundle/openai-realtime-agents.mjs";
import { VoiceTrace } from "/static/voice-trace.js";
import { attachOpenAIRealtime } from "/static/adapters/openai-realtime.js";

const q = new URLSearchParams(location.search);
const control = (path, params) =>
  fetch(`${q.get("provider")}/control/${path}?${new URLSearchParams({ conn: "0", ...params })}`).then((r) => r.json());
const play = (...seq) => control("play", { seq: seq.join(",") });
const until = async (cond, label) => {
  const deadline = Date.now() + 20000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

async function run() {
  const recorded = [];
  const problems = [];
  const trace = await VoiceTrace.start({
    gatewayUrl: q.get("gateway"),
    provider: "openai",
    model: "gpt-realtime",
    onEvent: (e) => recorded.push(e),
    onError: (e) => problems.push(`${e.kind}: ${e.message}`),
  });
  const count = (type) => recorded.filter((e) => e.type === type).length;

  const getWeather = tool({
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
    strict: true,
    execute: async () => ({ temp_c: 18, condition: "light rain" }),
  });
  const agent = new RealtimeAgent({ name: "Assistant", instructions: "You are a helpful voice assistant.", tools: [getWeather] });
  const transport = new OpenAIRealtimeWebSocket({ url: `${q.get("ws")}/v1/realtime?model=gpt-realtime`, useInsecureApiKey: true });
  const session = new RealtimeSession(agent, { transport, model: "gpt-realtime" });
  session.on("error", () => {});
  const tracer = attachOpenAIRealtime(session, trace);
  session.on("audio", () => tracer.playbackStarted());
  const connected = session.connect({ apiKey: "sk-test-key" });
  await play("session_created");
  await control("wait", { type: "session.update" });
  await play("session_updated");
  await connected;

  await play("turn1_user", "turn1_tool_call");
  await control("wait", { type: "response.create" });
  await play("turn1_answer");
  await until(() => count("model.turn_complete") === 1, "turn 1");
  await new Promise((r) => setTimeout(r, 600)); // the 400 ms answer plays out before the next question
  await play("turn2_user", "turn2_answer");
  await until(() => count("model.turn_complete") === 2, "turn 2");
  await play("turn3_user_barge_in");
  const truncate = await control("wait", { type: "conversation.item.truncate" });
  await control("send", {
    msg: JSON.stringify({ type: "conversation.item.truncated", event_id: "event_truncated_1", item_id: truncate.item_id, content_index: 0, audio_end_ms: truncate.audio_end_ms }),
  });
  await play("turn3_user_rest", "turn3_answer");
  await until(() => count("model.turn_complete") === 3, "turn 3");
  session.close();
  await until(() => count("connection.close") === 1, "close");
  await trace.end("completed");
  return { session_id: trace.sessionId, trace_id: trace.traceId, truncate, problems, types: recorded.map((e) => e.type) };
}

run().then(
  (r) => (window.result = r),
  (e) => (window.failure = String((e && e.stack) || e)),
);
