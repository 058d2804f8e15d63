// A GenAILiveClient in the style of the system this gateway derives from: an EventEmitter around
// @google/genai's Live API whose raw handler is named `onMessage` and is bound inside connect(). Like such
// clients, it surfaces only part of each server message as events and drops the rest (usage, transcriptions,
// generationComplete, goAway, resumption updates): the adapter has to see the raw messages.

import { EventEmitter } from "node:events";
import { GoogleGenAI } from "@google/genai";

export class GenAILiveClient extends EventEmitter {
  constructor(options) {
    super();
    this.ai = new GoogleGenAI(options);
    this.session = null;
    this.config = null;
    this.status = "disconnected";
  }

  getConfig() {
    return { ...this.config };
  }

  async connect(model, config) {
    this.config = config;
    this.status = "connecting";
    this.session = await this.ai.live.connect({
      model,
      config,
      callbacks: {
        onopen: this.onOpen.bind(this),
        onmessage: this.onMessage.bind(this),
        onerror: this.onError.bind(this),
        onclose: this.onClose.bind(this),
      },
    });
    this.status = "connected";
    return true;
  }

  disconnect() {
    if (this.session) this.session.close();
    this.session = null;
    this.status = "disconnected";
  }

  sendRealtimeInput(chunks) {
    for (const c of chunks) this.session.sendRealtimeInput({ audio: c });
  }

  sendToolResponse(toolResponse) {
    this.session.sendToolResponse(toolResponse);
  }

  onOpen() {
    this.emit("open");
  }

  onError(e) {
    this.emit("error", e);
  }

  onClose(e) {
    this.emit("close", e);
  }

  onMessage(message) {
    if (message.setupComplete) return void this.emit("setupcomplete");
    if (message.toolCall) return void this.emit("toolcall", message.toolCall);
    if (message.toolCallCancellation) return void this.emit("toolcallcancellation", message.toolCallCancellation);
    const sc = message.serverContent;
    if (!sc) return;
    if (sc.interrupted) return void this.emit("interrupted");
    if (sc.turnComplete) this.emit("turncomplete");
    const parts = (sc.modelTurn && sc.modelTurn.parts) || [];
    const audio = parts.filter((p) => p.inlineData && String(p.inlineData.mimeType).startsWith("audio/pcm"));
    for (const p of audio) this.emit("audio", Buffer.from(p.inlineData.data, "base64"));
    const other = parts.filter((p) => !audio.includes(p));
    if (other.length) this.emit("content", { modelTurn: { parts: other } });
  }
}
