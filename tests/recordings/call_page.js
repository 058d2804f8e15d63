// Runs in the page (tests/recordings/test_browser_recording.py): a call whose "user" is Chromium's fake
// microphone (a spoken WAV, looping) and whose "model" answers each utterance with spoken PCM fed to the
// recorder. Turns come from a client-side voice activity detector on the microphone, as in a real app, so the
// spans mark where the user really spoke; the test then checks the stored recording against them.
async ({ modelPcm, modelRate, seconds }) => {
  const { VoiceTrace } = await import("/static/voice-trace.js");
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
    gatewayUrl: location.origin, recordAudio: true, microphone: mic, provider: "gcp.gemini", model: "test-model",
    flushIntervalMs: 200, onError: (e) => errors.push(`${e.kind}: ${e.message}`), recorder: { chunkMs: 2000 },
  });
  const pcm = Int16Array.from(modelPcm);
  const replyMs = (pcm.length / modelRate) * 1000;
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
        // The model answers at once: its audio goes into the recording as the adapters would feed it.
        trace.record("model.response_start");
        trace.record("model.audio_start");
        trace.recorder.feedModelPcm(pcm, modelRate);
        trace.record("model.playback_start");
        modelUntil = Date.now() + replyMs;
        const done = modelUntil;
        setTimeout(() => trace.record("model.turn_complete", {}, { ts: done }), replyMs);
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
