// The viewer's call player (README "Recordings"): under the waterfall, the session's recording with a waveform per
// channel (user left, model right), drawn from the decoded audio. Clicking a span's row plays its time range.
// The audio is fetched whole by the signed link on the root span and decoded with Web Audio: a MediaRecorder
// WebM has no seek index, so playing ranges from the decoded buffer is exact where an <audio> element's seeking
// is not. The player keeps its own element outside the waterfall, which the viewer redraws every poll.

const URI = "voice.recording.uri";
const START = "voice.recording.start_time_unix_nano";

export class CallPlayer {
  constructor(container) {
    this.container = container;
    this.uri = null;
    this.buffer = null;
    this.origin = 0;
    this.source = null;
    this.playing = null; // {offset, duration} while a range plays
    this.ctx = null;
    window.vtgPlayer = this; // for tests and the curious
  }

  /** Called with each trace the viewer draws: loads its recording once, or hides the player. */
  async show(data) {
    const root = (data.spans || []).find((s) => s.name === "voice_session" && s.end_time_unix_nano);
    const uri = root && root.attributes[URI];
    if (!uri) {
      if (this.uri !== null) this._reset();
      return;
    }
    if (uri === this.uri) return;
    this._reset();
    this.uri = uri;
    this.origin = Number(root.attributes[START]);
    this.container.hidden = false;
    this._status(`loading the recording (${root.attributes["voice.recording.format"] || "audio"})…`);
    try {
      const response = await fetch(uri);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const bytes = await response.arrayBuffer();
      if (this.uri !== uri) return;
      this.ctx = this.ctx || new AudioContext();
      this.buffer = await this.ctx.decodeAudioData(bytes);
      this._draw();
      this._status(`${this.buffer.duration.toFixed(1)} s · ${root.attributes["voice.recording.channel_layout"] || ""}` +
                   " · click a span to play its part");
      this.container.dataset.state = "ready";
    } catch (error) {
      this._status(`the recording could not be played: ${error.message || error}`);
      this.container.dataset.state = "failed";
    }
  }

  /** Plays the part of the call between two span times (ns on the session clock); the whole call without them. */
  play(startNs, endNs) {
    if (!this.buffer) return;
    this.stop();
    const offset = startNs === undefined ? 0 : Math.max(0, (startNs - this.origin) / 1e9);
    const end = endNs === undefined ? this.buffer.duration : Math.min(this.buffer.duration, (endNs - this.origin) / 1e9);
    const duration = Math.max(0, end - offset);
    if (duration <= 0) return;
    if (this.ctx.state === "suspended") this.ctx.resume();
    const source = this.ctx.createBufferSource();
    source.buffer = this.buffer;
    source.connect(this.ctx.destination);
    source.start(0, offset, duration);
    source.onended = () => {
      if (this.source === source) {
        this.source = null;
        this.playing = null;
        this._cursor(null);
      }
    };
    this.source = source;
    this.playing = { offset, duration, startedAt: this.ctx.currentTime };
    this._animate();
  }

  stop() {
    if (this.source) {
      try {
        this.source.stop();
      } catch (_) {
        /* ended */
      }
    }
    this.source = null;
    this.playing = null;
    this._cursor(null);
  }

  /** Wires row clicks in the waterfall (rows carry data-start / data-end in ns). */
  listen(table) {
    table.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-start]");
      if (!row || !this.buffer) return;
      const end = row.dataset.end ? Number(row.dataset.end) : undefined;
      this.play(Number(row.dataset.start), end);
    });
  }

  _reset() {
    this.stop();
    this.uri = null;
    this.buffer = null;
    this.container.hidden = true;
    this.container.dataset.state = "";
    this.container.replaceChildren();
  }

  _status(text) {
    let status = this.container.querySelector(".player-status");
    if (!status) {
      const button = document.createElement("button");
      button.textContent = "▶ whole call";
      button.addEventListener("click", () => (this.playing ? this.stop() : this.play()));
      status = document.createElement("span");
      status.className = "player-status muted";
      const bar = document.createElement("div");
      bar.className = "player-bar";
      bar.append(button, status);
      this.container.append(bar);
    }
    status.textContent = text;
  }

  _draw() {
    const labels = ["user (left)", "model (right)"];
    this.canvases = [];
    for (let channel = 0; channel < 2; channel++) {
      const canvas = document.createElement("canvas");
      canvas.className = "waveform";
      canvas.width = 1200;
      canvas.height = 60;
      canvas.title = labels[channel];
      canvas.dataset.channel = String(channel);
      canvas.addEventListener("click", (event) => {
        const at = (event.offsetX / canvas.clientWidth) * this.buffer.duration;
        this.play(this.origin + at * 1e9);
      });
      const data = this.buffer.getChannelData(Math.min(channel, this.buffer.numberOfChannels - 1));
      const g = canvas.getContext("2d");
      g.fillStyle = channel === 0 ? "#c77dff" : "#3cc5a0";
      const per = Math.max(1, Math.floor(data.length / canvas.width));
      for (let x = 0; x < canvas.width; x++) {
        let peak = 0;
        for (let i = x * per; i < (x + 1) * per && i < data.length; i++) peak = Math.max(peak, Math.abs(data[i]));
        const h = Math.max(1, peak * canvas.height);
        g.fillRect(x, (canvas.height - h) / 2, 1, h);
      }
      const label = document.createElement("div");
      label.className = "waveform-label muted";
      label.textContent = labels[channel];
      this.container.append(label, canvas);
      this.canvases.push(canvas);
    }
    this._cursorEls = this.canvases.map((canvas) => {
      const line = document.createElement("div");
      line.className = "player-cursor";
      line.hidden = true;
      canvas.before(line);
      return line;
    });
  }

  _animate() {
    const step = () => {
      if (!this.playing || !this.buffer) return;
      const at = this.playing.offset + (this.ctx.currentTime - this.playing.startedAt);
      this._cursor(at);
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  _cursor(seconds) {
    for (const [i, line] of (this._cursorEls || []).entries()) {
      if (seconds === null) {
        line.hidden = true;
        continue;
      }
      const canvas = this.canvases[i];
      line.hidden = false;
      line.style.left = `${canvas.offsetLeft + (seconds / this.buffer.duration) * canvas.clientWidth}px`;
      line.style.top = `${canvas.offsetTop}px`;
      line.style.height = `${canvas.clientHeight}px`;
    }
  }
}
