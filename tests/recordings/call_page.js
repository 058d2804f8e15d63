// Runs in the page (tests/recordings/test_browser_recording.py): a call whose "user" is Chromium's fake
// microphone (a spoken WAV, looping) and whose "model" answers each utterance with spoken PCM, as OpenAI Realtime
// sends it over a WebSocket (base64 `response.output_audio.delta` events) to the OpenAI adapter, which hands it to
// the recorder itself. Turns come from a client-side voice activity detector on the microphone, as in a real app,
// so the spans mark where the user really spoke; the test then checks the stored recording against them.
async ({ modelPcm, modelRate, seconds }) => {
  const { VoiceTrace } = await import("/static/voice-trace.js");
  const { createOpenAIRealtimeAdapter } = await import("/static/adapters/openai-realtime.js");
  const mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const vadCtx = new AudioContext();
  await vadCtx.resume();
  const analyser = vadCtx.createAnalyser();
  analyser.fftSize = 512;
  vadCtx.createMediaStreamSource(mic).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const level = () => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    return Math.sqrt(sum / buf.length);
  };
  const THRESHOLD = 0.01;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // Start in a pause of the looping WAV, so no utterance is cut by the start.
  let quietFor = 0;
  while (quietFor < 500) {
    await sleep(20);
    quietFor = level() < THRESHOLD ? quietFor + 20 : 0;
  }
  const errors = [];
  const trace = await VoiceTrace.start({
    gatewayUrl: location.origin, recordAudio: true, microphone: mic, provider: "openai", model: "test-model",
    flushIntervalMs: 200, onError: (e) => errors.push(`${e.kind}: ${e.message}`), recorder: { chunkMs: 2000 },
  });
  // The adapter's clock: the page's, except that the reply's end is reported at the moment its audio ended (a
  // loaded machine may run the timer late; a real app hears response.done before the audio ends anyway).
  let at = null;
  const tracer = createOpenAIRealtimeAdapter(trace, { outputSampleRate: modelRate, now: () => at ?? Date.now() });
  const pcm = Int16Array.from(modelPcm);
  const replyMs = (pcm.length / modelRate) * 1000;
  // The reply as the server's audio deltas: base64 PCM16, 100 ms each.
  const deltas = [];
  for (let i = 0; i < pcm.length; i += modelRate / 10) {
    const bytes = new Uint8Array(pcm.slice(i, i + modelRate / 10).buffer);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    deltas.push(btoa(bin));
  }
  const started = Date.now();
  let speaking = false;
  let quietSince = null;
  let modelUntil = 0;
  let turns = 0;
  for (;;) {
    await sleep(10);
    const now = Date.now();
    if (level() > THRESHOLD) {
      quietSince = null;
      if (!speaking && now > modelUntil) {
        speaking = true;
        trace.record("user.speech_start", {}, { ts: now - 12 }); // half the analyser's window ago
      }
    } else if (speaking) {
      quietSince = quietSince ?? now;
      if (now - quietSince > 400) {
        speaking = false;
        trace.record("user.speech_end", {}, { ts: quietSince });
        // The model answers at once; the adapter reports it and feeds its audio to the recording.
        tracer.handleServerEvent({ type: "response.created", response: { id: `resp-${turns}` } });
        for (const delta of deltas) {
          tracer.handleServerEvent({ type: "response.output_audio.delta", item_id: `item-${turns}`, delta });
        }
        tracer.playbackStarted();
        modelUntil = Date.now() + replyMs;
        const done = modelUntil;
        setTimeout(() => {
          at = done;
          tracer.handleServerEvent({ type: "response.done", response: { id: `resp-${turns}`, status: "completed", output: [] } });
          tracer.playbackEnded(done);
          at = null;
        }, replyMs);
        turns++;
      }
    }
    if (now - started > seconds * 1000 && !speaking && now > modelUntil + 500) break;
  }
  const summary = await trace.end("completed");
  await trace.recorder.done;
  return {
    traceId: trace.traceId, sessionId: trace.sessionId, summary, errors, turns,
    recorder: { state: trace.recorder.state, mimeType: trace.recorder.mimeType, stats: trace.recorder.stats },
  };
}
