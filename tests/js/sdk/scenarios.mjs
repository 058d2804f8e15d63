// Conversations driven through the providers' official SDKs against the local provider server, with the
// gateway's client and adapters attached as README.md shows. Each returns what the test needs to check.

import { GoogleGenAI, Modality } from "@google/genai";
import { OpenAIRealtimeWebSocket, RealtimeAgent, RealtimeSession, tool } from "@openai/agents-realtime";
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";
import { z } from "zod";

import { attachGeminiLive, createGeminiLiveAdapter } from "../../../gateway/static/adapters/gemini-live.js";
import { attachOpenAIRealtime } from "../../../gateway/static/adapters/openai-realtime.js";
import { GenAILiveClient } from "./genai-live-client.mjs";
import { ProviderServer, testCertificate, until } from "./provider-server.mjs";

const GEMINI_MODEL = "gemini-live-2.5-flash-preview";
const WEATHER = { temp_c: 18, condition: "light rain" };
const MIC = { data: Buffer.alloc(3200).toString("base64"), mimeType: "audio/pcm;rate=16000" };

/** Counts the events the trace recorded so far (the client's onEvent hook feeds `recorded`). */
function counter(recorded) {
  return (type) => recorded.filter((e) => e.type === type).length;
}

function geminiConfig(handle) {
  return {
    responseModalities: [Modality.AUDIO],
    inputAudioTranscription: {},
    outputAudioTranscription: {},
    sessionResumption: handle ? { handle } : {},
  };
}

/** The Gemini conversation of the fixture, the same whichever way the app holds the SDK (`driver`). */
async function geminiConversation(server, recorded, driver) {
  const count = counter(recorded);
  const setupOn = (n) =>
    server.connection(n).then(async (c) => {
      c.setup = (await c.waitFor((m) => m.setup, "setup")).setup;
      c.play("setup");
      return c;
    });

  const c1p = setupOn(0);
  await driver.connect(null);
  const c1 = await c1p;

  // Turn 1: a question, a tool call the app answers, the answer.
  driver.tracer.userSpeechStart();
  driver.sendAudio();
  driver.tracer.userSpeechEnd();
  c1.play("turn1_question");
  c1.play("turn1_tool_call");
  await c1.waitFor((m) => m.toolResponse, "toolResponse");
  c1.play("turn1_answer");
  await until(() => count("model.turn_complete") === 1 && driver.tracer.resumptionHandle === "resume-handle-1", "turn 1");

  // Turn 2: the user barges in while the answer plays; Gemini sends interrupted, then turnComplete.
  driver.tracer.userSpeechStart();
  driver.tracer.userSpeechEnd();
  c1.play("turn2_question");
  c1.play("turn2_answer_start");
  await until(() => count("tool.call") === 2 && driver.audioChunks === 4, "turn 2 audio");
  driver.tracer.userSpeechStart();
  c1.play("turn2_interrupted");
  await until(() => count("model.turn_complete") === 2 && driver.tracer.resumptionHandle === "resume-handle-2", "turn 2");
  driver.tracer.userSpeechEnd();

  // The server is going away: the app reconnects, resuming with the newest handle.
  c1.play("go_away");
  await until(() => count("connection.go_away") === 1, "goAway");
  driver.close();
  await until(() => count("connection.close") === 1, "close 1");
  const c2p = setupOn(1);
  await driver.connect(driver.tracer.resumptionHandle);
  const c2 = await c2p;

  // Turn 3 on the resumed connection.
  driver.tracer.userSpeechStart();
  driver.tracer.userSpeechEnd();
  c2.play("turn3_question");
  c2.play("turn3_answer");
  await until(() => count("model.turn_complete") === 3, "turn 3");
  driver.close();
  await until(() => count("connection.close") === 2, "close 2");
  return { resumedWith: c2.setup.sessionResumption && c2.setup.sessionResumption.handle, setup: c1.setup };
}

/** `ai.live.connect` with callbacks: the adapter wraps the callbacks the app passes. */
export async function geminiCallbacks({ trace, recorded, adapterOptions = {} }) {
  const server = await ProviderServer.start({ fixture: "gemini-live" });
  try {
    const ai = new GoogleGenAI({ apiKey: "test-key", httpOptions: { baseUrl: server.httpUrl } });
    const tracer = createGeminiLiveAdapter(trace, adapterOptions);
    let session = null;
    let playing = false;
    const driver = {
      tracer,
      audioChunks: 0,
      async connect(handle) {
        // The app's own callbacks: a player that starts at once, and the tool it runs.
        const app = {
          onmessage(message) {
            const sc = message.serverContent;
            const parts = (sc && sc.modelTurn && sc.modelTurn.parts) || [];
            for (const p of parts) {
              if (p.inlineData) {
                driver.audioChunks++;
                if (!playing) tracer.playbackStarted();
                playing = true;
              }
            }
            if (sc && (sc.turnComplete || sc.interrupted)) playing = false;
            for (const fc of (message.toolCall && message.toolCall.functionCalls) || []) {
              if (fc.name === "get_weather") {
                session.sendToolResponse({ functionResponses: [{ id: fc.id, name: fc.name, response: { output: WEATHER } }] });
              }
            }
          },
        };
        session = tracer.wrapSession(
          await ai.live.connect({
            model: GEMINI_MODEL,
            config: geminiConfig(handle),
            callbacks: tracer.wrapCallbacks(app, { resumeHandle: handle }),
          }),
        );
      },
      sendAudio() {
        session.sendRealtimeInput({ audio: MIC });
      },
      close() {
        session.close();
      },
    };
    return await geminiConversation(server, recorded, driver);
  } finally {
    await server.stop();
  }
}

/** A GenAILiveClient whose raw handler is `onMessage`, bound inside connect(), with an AudioStreamer-like player. */
export async function geminiOnMessageClient({ trace, recorded, adapterOptions = {} }) {
  const server = await ProviderServer.start({ fixture: "gemini-live" });
  try {
    const client = new GenAILiveClient({ apiKey: "test-key", httpOptions: { baseUrl: server.httpUrl } });
    const player = {
      isPlaying: false,
      initialBufferTime: 0,
      addPCM16() {
        this.isPlaying = true;
      },
      stop() {
        this.isPlaying = false;
      },
    };
    const tracer = attachGeminiLive(client, trace, { audioStreamer: player, ...adapterOptions });
    const driver = {
      tracer,
      audioChunks: 0,
      async connect(handle) {
        await client.connect(GEMINI_MODEL, geminiConfig(handle));
      },
      sendAudio() {
        client.sendRealtimeInput([MIC]);
      },
      close() {
        client.disconnect();
      },
    };
    // The app's own wiring.
    client.on("audio", (data) => {
      driver.audioChunks++;
      player.addPCM16(new Uint8Array(data));
    });
    client.on("interrupted", () => player.stop());
    client.on("turncomplete", () => (player.isPlaying = false));
    client.on("toolcall", (tc) => {
      const responses = tc.functionCalls
        .filter((fc) => fc.name === "get_weather")
        .map((fc) => ({ id: fc.id, name: fc.name, response: { output: WEATHER } }));
      if (responses.length) client.sendToolResponse({ functionResponses: responses });
    });
    return await geminiConversation(server, recorded, driver);
  } finally {
    await server.stop();
  }
}

/** The OpenAI conversation of the fixture as the server plays it; `app` is how the app talks to the SDK. */
async function openaiHandshake(server) {
  const c = await server.connection(0);
  c.play("session_created");
  await c.waitFor((m) => m.type === "session.update", "session.update");
  c.play("session_updated");
  return c;
}

/**
 * @openai/agents-realtime: a RealtimeSession over its WebSocket transport, a tool the SDK runs itself, a
 * barge-in after the answer finished generating (the SDK truncates what was not played yet).
 */
export async function openaiAgentsSession({ trace, recorded, attachTo = "session" }) {
  const server = await ProviderServer.start({ fixture: "openai-realtime" });
  const count = counter(recorded);
  try {
    const getWeather = tool({
      name: "get_weather",
      description: "Current weather in a city",
      parameters: z.object({ city: z.string() }),
      execute: async () => WEATHER,
    });
    const agent = new RealtimeAgent({ name: "Assistant", instructions: "You are a helpful voice assistant.", tools: [getWeather] });
    const transport = new OpenAIRealtimeWebSocket({ url: `${server.wsUrl}/v1/realtime?model=gpt-realtime` });
    const session = new RealtimeSession(agent, { transport, model: "gpt-realtime" });
    session.on("error", () => {}); // the fixture's error event; the trace records it
    const tracer = attachOpenAIRealtime(attachTo === "transport" ? session.transport : session, trace);
    // A WebSocket app plays the audio itself: its player says when the first chunk of an answer is heard.
    session.on("audio", () => tracer.playbackStarted());
    const connected = session.connect({ apiKey: "sk-test-key" });
    const c = await openaiHandshake(server);
    await connected;

    c.play("turn1_user");
    c.play("turn1_tool_call");
    await c.waitFor((m) => m.type === "conversation.item.create" && m.item && m.item.type === "function_call_output", "tool output");
    await c.waitFor((m) => m.type === "response.create", "response.create");
    c.play("turn1_answer");
    await until(() => count("model.turn_complete") === 1, "turn 1");
    // The SDK's player estimate counts real time from the first audio: let the 400 ms answer play out, so
    // the next question is not a barge-in (waiting longer changes nothing).
    await new Promise((r) => setTimeout(r, 600));

    c.play("turn2_user");
    c.play("turn2_answer");
    await until(() => count("model.turn_complete") === 2, "turn 2");
    // The answer is generated (20 s of audio: a wide margin over the time a loaded machine takes to get
    // here) but still playing: the user barges in.
    c.play("turn3_user_barge_in");
    const truncate = await c.waitFor((m) => m.type === "conversation.item.truncate", "truncate");
    c.send({ type: "conversation.item.truncated", event_id: "event_truncated_1", item_id: truncate.item_id, content_index: truncate.content_index, audio_end_ms: truncate.audio_end_ms });
    c.play("turn3_user_rest");
    c.play("turn3_answer");
    await until(() => count("model.turn_complete") === 3, "turn 3");
    c.play("error");
    await until(() => count("error") === 1, "error");
    session.close();
    await until(() => count("connection.close") === 1, "close");
    return { truncate, tracer };
  } finally {
    await server.stop();
  }
}

/**
 * The `openai` package's realtime WebSocket client (OpenAIRealtimeWS; it only speaks wss:, so the local server
 * serves a test certificate): the app runs the tool and, on a barge-in while the answer is generating, cancels
 * the response and truncates what was played.
 */
export async function openaiRealtimeWS({ trace, recorded }) {
  const server = await ProviderServer.start({ fixture: "openai-realtime", tls: true });
  const count = counter(recorded);
  try {
    const client = new OpenAI({ apiKey: "sk-test-key", baseURL: `${server.httpUrl}/v1` });
    const rt = new OpenAIRealtimeWS({ model: "gpt-realtime", options: { ca: testCertificate().cert } }, client);
    const tracer = attachOpenAIRealtime(rt, trace);
    let answering = null;
    rt.on("error", () => {}); // the fixture's error event; the trace records it
    rt.socket.on("open", () => rt.send({ type: "session.update", session: { type: "realtime", output_modalities: ["audio"] } }));
    rt.on("response.output_audio.delta", (e) => {
      answering = e.item_id;
      tracer.playbackStarted(); // the app's player starts at once (reported once per answer)
    });
    rt.on("response.done", () => (answering = null));
    rt.on("response.function_call_arguments.done", (e) => {
      rt.send({ type: "conversation.item.create", item: { type: "function_call_output", call_id: e.call_id, output: JSON.stringify(WEATHER) } });
      rt.send({ type: "response.create" });
    });
    rt.on("input_audio_buffer.speech_started", () => {
      if (!answering) return;
      rt.send({ type: "response.cancel" });
      rt.send({ type: "conversation.item.truncate", item_id: answering, content_index: 0, audio_end_ms: 300 });
    });
    const c = await openaiHandshake(server);

    c.play("turn1_user");
    c.play("turn1_tool_call");
    await c.waitFor((m) => m.type === "response.create", "response.create");
    c.play("turn1_answer");
    await until(() => count("model.turn_complete") === 1, "turn 1");

    c.play("turn2_user");
    c.play("cancelled_answer_start");
    await until(() => count("model.audio_start") === 2, "turn 2 audio");
    c.play("turn3_user_barge_in");
    const truncate = await c.waitFor((m) => m.type === "conversation.item.truncate", "truncate");
    await c.waitFor((m) => m.type === "response.cancel", "response.cancel");
    c.send({ type: "conversation.item.truncated", event_id: "event_truncated_1", item_id: truncate.item_id, content_index: 0, audio_end_ms: truncate.audio_end_ms });
    c.play("cancelled_answer_done");
    c.play("turn3_user_rest");
    c.play("turn3_answer");
    await until(() => count("model.turn_complete") === 2, "turn 3");
    c.play("error");
    await until(() => count("error") === 1, "error");
    rt.close();
    await until(() => count("connection.close") === 1, "close");
    return { truncate, tracer };
  } finally {
    await server.stop();
  }
}

export const SCENARIOS = { geminiCallbacks, geminiOnMessageClient, openaiAgentsSession, openaiRealtimeWS };
