// Runs one SDK scenario with the gateway's browser client attached, as README.md shows:
//   node tests/js/sdk/run-scenario.mjs <scenario> <gatewayUrl> [provider] [model]
// and prints {session_id, trace_id, recorded, info} as JSON (tests/test_provider_sdks.py reads it).

import { VoiceTrace } from "../../../gateway/static/voice-trace.js";
import { SCENARIOS } from "./scenarios.mjs";

const [name, gatewayUrl, provider, model] = process.argv.slice(2);
const scenario = SCENARIOS[name];
if (!scenario || !gatewayUrl) {
  console.error(`usage: run-scenario.mjs <${Object.keys(SCENARIOS).join("|")}> <gatewayUrl> [provider] [model]`);
  process.exit(2);
}
const recorded = [];
const problems = [];
const trace = await VoiceTrace.start({
  gatewayUrl,
  provider: provider || (name.startsWith("gemini") ? "gcp.gemini" : "openai"),
  model: model || (name.startsWith("gemini") ? "gemini-live-2.5-flash-preview" : "gpt-realtime"),
  pageLifecycle: false,
  onEvent: (e) => recorded.push(e),
  onError: (e) => problems.push({ kind: e.kind, message: e.message }),
});
if (trace.state === "failed") {
  console.error(JSON.stringify(problems));
  process.exit(1);
}
const info = await scenario({ trace, recorded });
const summary = await trace.end("completed");
const { tracer: _tracer, ...plain } = info || {};
process.stdout.write(
  JSON.stringify({ session_id: trace.sessionId, trace_id: trace.traceId, capture: trace.capture, recorded, problems, summary, info: plain }),
);
process.exit(0);
