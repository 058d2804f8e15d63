// Runs in the page (tests/recordings/test_webrtc_recording.py): an OpenAI Realtime call over WebRTC played by two
// peer connections in the page. The "model" peer sends speech on its audio track and opens the "oai-events" data
// channel; the app's peer receives the track and plays it in an <audio> element, as the agents SDK does. The app
// attaches the OpenAI adapter to the data channel with its peer connection, and nothing else: the adapter hands
// the remote track to the recorder. The model's events come over the data channel as OpenAI sends them.
async ({ modelPcm, modelRate }) => {
  const { VoiceTrace } = await import("/static/voice-trace.js");
  const { attachOpenAIRealtime } = await import("/static/adapters/openai-realtime.js");
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const errors = [];
  const trace = await VoiceTrace.start({
    gatewayUrl: location.origin, recordAudio: true, provider: "openai", model: "test-model", flushIntervalMs: 200,
    onError: (e) => errors.push(`${e.kind}: ${e.message}`), recorder: { chunkMs: 2000 },
  });

  const model = new RTCPeerConnection();
  const app = new RTCPeerConnection();
  model.onicecandidate = (e) => e.candidate && app.addIceCandidate(e.candidate);
  app.onicecandidate = (e) => e.candidate && model.addIceCandidate(e.candidate);
  const voiceCtx = new AudioContext();
  await voiceCtx.resume();
  const voice = voiceCtx.createMediaStreamDestination();
  model.addTrack(voice.stream.getAudioTracks()[0], voice.stream);
  const serverChannel = model.createDataChannel("oai-events");
  const player = document.createElement("audio");
  player.autoplay = true;
  document.body.appendChild(player);
  const gotChannel = new Promise((resolve) => {
    app.ondatachannel = (e) => {
      // The app's one line: the adapter on the events channel, told the peer connection the audio comes on.
      attachOpenAIRealtime(e.channel, trace, { peerConnection: app });
      e.channel.addEventListener("open", () => resolve(e.channel));
      if (e.channel.readyState === "open") resolve(e.channel);
    };
  });
  app.ontrack = (e) => {
    player.srcObject = e.streams[0]; // Chrome feeds a remote track to Web Audio only while it plays somewhere
  };
  await model.setLocalDescription(await model.createOffer());
  await app.setRemoteDescription(model.localDescription);
  await app.setLocalDescription(await app.createAnswer());
  await model.setRemoteDescription(app.localDescription);
  await gotChannel;
  const send = (ev) => serverChannel.send(JSON.stringify(ev));
  await new Promise((r) => (serverChannel.readyState === "open" ? r() : serverChannel.addEventListener("open", r)));
  send({ type: "session.created", session: {} });

  await sleep(1500); // silence first: nothing of the model before it speaks
  const pcm = Int16Array.from(modelPcm);
  const buffer = voiceCtx.createBuffer(1, pcm.length, modelRate);
  const data = buffer.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
  send({ type: "input_audio_buffer.speech_started" });
  await sleep(300);
  send({ type: "input_audio_buffer.speech_stopped" });
  send({ type: "response.created", response: { id: "resp-1" } });
  const source = voiceCtx.createBufferSource();
  source.buffer = buffer;
  source.connect(voice);
  const ended = new Promise((r) => (source.onended = r));
  source.start();
  send({ type: "output_audio_buffer.started", response_id: "resp-1" });
  await ended;
  // The track's last audio reaches the app a little after the model sent it (the network, the jitter buffer);
  // the server's stopped is sent once it has sent everything, so it is reported here, after a margin.
  await sleep(400);
  send({ type: "response.done", response: { id: "resp-1", status: "completed", output: [] } });
  send({ type: "output_audio_buffer.stopped", response_id: "resp-1" });
  await sleep(1500); // silence after
  const summary = await trace.end("completed");
  await trace.recorder.done;
  model.close();
  app.close();
  return {
    traceId: trace.traceId, summary, errors, receivers: app.getReceivers().length,
    recorder: { state: trace.recorder.state, stats: trace.recorder.stats },
  };
}
