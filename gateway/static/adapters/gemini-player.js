// The app's audio player, shaped like live-api-web-console's AudioStreamer (addPCM16, isPlaying,
// initialBufferTime, stop, onComplete), seen from outside: what it was asked to play, when it stopped, when it
// played out. Wrapping its methods is the only way to know; the adapter decides what that means for the turn.

function initialBufferOf(streamer) {
  return typeof streamer.initialBufferTime === "number" ? streamer.initialBufferTime : 0.1;
}

/**
 * Wraps the player's methods to call `on.queued(wasPlaying, initialBufferS)` after each chunk is queued,
 * `on.stopped()` before it is stopped and `on.playedOut()` when its queue has played out. The player behaves as
 * before whatever the callbacks do. Returns an undo function that restores what is still ours.
 */
export function hookAudioStreamer(streamer, on) {
  if (!streamer || typeof streamer.addPCM16 !== "function") return () => {};
  const original = streamer.addPCM16;
  const wrapped = function addPCM16(...args) {
    let wasPlaying = true;
    try {
      wasPlaying = !!streamer.isPlaying;
    } catch (_) {
      /* ignore */
    }
    const out = original.apply(this, args);
    try {
      on.queued(wasPlaying, initialBufferOf(streamer));
    } catch (_) {
      /* never into the app */
    }
    return out;
  };
  streamer.addPCM16 = wrapped;
  const originalStop = typeof streamer.stop === "function" ? streamer.stop : null;
  const wrappedStop = function stop(...args) {
    try {
      on.stopped();
    } catch (_) {
      /* never into the app */
    }
    return originalStop.apply(this, args);
  };
  if (originalStop) streamer.stop = wrappedStop;
  // live-api-web-console's AudioStreamer calls onComplete when its queue has played out.
  const originalComplete = typeof streamer.onComplete === "function" ? streamer.onComplete : null;
  const wrappedComplete = function onComplete(...args) {
    try {
      on.playedOut();
    } catch (_) {
      /* never into the app */
    }
    return originalComplete ? originalComplete.apply(this, args) : undefined;
  };
  if ("onComplete" in streamer) streamer.onComplete = wrappedComplete;
  return () => {
    if (streamer.addPCM16 === wrapped) streamer.addPCM16 = original;
    if (originalStop && streamer.stop === wrappedStop) streamer.stop = originalStop;
    if (streamer.onComplete === wrappedComplete) streamer.onComplete = originalComplete;
  };
}
