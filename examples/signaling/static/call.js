// What the merchant console and the customer chat share: the browser's half of a shopcall
// call. Plain WebRTC; nothing here is specific to shopcall but the JSON the example service
// speaks.
//
//   page ──fetch (JSON) + server-sent events──▶ signaling service ──gRPC──▶ shopcalld
//   page ◀──────────── WebRTC media (one RTCPeerConnection) ─────────────▶ shopcalld

/** POSTs JSON to the signaling service; throws with its `error` message on failure. */
export async function post(path, body = {}) {
  const res = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const reply = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(reply.error || `${path}: HTTP ${res.status}`);
  return reply;
}

/** Calls `handle(event)` for every page event of `role` (server-sent events). */
export function onPageEvents(role, handle) {
  const source = new EventSource(`/api/events?role=${role}`);
  source.onmessage = (message) => handle(JSON.parse(message.data));
  return source;
}

/**
 * One peer connection to shopcalld with an audio and a video m-line, both sendrecv.
 *
 * The other side's media arrives on the same two m-lines, and a camera can start later with
 * `video.sender.replaceTrack(track)`: nobody renegotiates during the call. `microphone` and
 * `camera` are tracks, or undefined for an m-line that sends nothing yet.
 *
 * No ICE servers: shopcalld is ICE-lite and its answer carries its reachable host candidates.
 */
export function createCall(microphone, camera) {
  const pc = new RTCPeerConnection();
  const audio = pc.addTransceiver(microphone ?? 'audio', { direction: 'sendrecv' });
  const video = pc.addTransceiver(camera ?? 'video', { direction: 'sendrecv' });
  return {
    pc,
    audio,
    video,
    remoteAudio: new MediaStream([audio.receiver.track]),
    remoteVideo: new MediaStream([video.receiver.track]),
  };
}

/**
 * Sends the offer to `path` with the source of each m-line declared, applies the answer and
 * returns the service's reply ({callId, answer, tracks, constraints}).
 */
export async function join(call, path, sources) {
  const offer = await offerWhenGathered(call.pc);
  const joined = await post(path, {
    offer,
    tracks: [
      { mid: call.audio.mid, source: sources.audio },
      { mid: call.video.mid, source: sources.video },
    ],
  });
  await call.pc.setRemoteDescription({ type: 'answer', sdp: joined.answer });
  return joined;
}

/**
 * Non-trickle ICE: the offer is sent once gathering is complete, with every candidate in it
 * (host candidates are gathered in milliseconds; the timeout only guards a stuck gatherer).
 */
export async function offerWhenGathered(pc, options) {
  await pc.setLocalDescription(await pc.createOffer(options));
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((done) => {
      const check = () => pc.iceGatheringState === 'complete' && done();
      pc.addEventListener('icegatheringstatechange', check);
      setTimeout(done, 3000);
    });
  }
  return pc.localDescription.sdp;
}

/** After a network change (Wi-Fi to 4G) ICE fails: restart it through the service. */
export function restartIceOnFailure(pc, role) {
  pc.addEventListener('iceconnectionstatechange', async () => {
    if (pc.iceConnectionState !== 'failed') return;
    const offer = await offerWhenGathered(pc, { iceRestart: true });
    const { answer } = await post(`/api/${role}/restart-ice`, { offer });
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  });
}

/**
 * What this page receives now, from its own getStats(): kbit/s per kind since the previous
 * call (pass the previous result back in), video frames per second, and the RTT to shopcalld.
 */
export async function receiving(pc, previous) {
  const now = { at: performance.now(), bytes: { audio: 0, video: 0 }, frames: 0 };
  let rttMs = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp') {
      now.bytes[s.kind] += s.bytesReceived ?? 0;
      if (s.kind === 'video') now.frames += s.framesDecoded ?? 0;
    }
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) {
      rttMs = s.currentRoundTripTime * 1000;
    }
  });
  const seconds = previous ? (now.at - previous.at) / 1000 : 0;
  const rate = (kind) =>
    seconds > 0 ? ((now.bytes[kind] - previous.bytes[kind]) * 8) / 1000 / seconds : 0;
  now.audioKbps = rate('audio');
  now.videoKbps = rate('video');
  now.fps = seconds > 0 ? (now.frames - previous.frames) / seconds : 0;
  now.rttMs = rttMs;
  return now;
}

/** Stops every track of a call and closes it. */
export function hangUpLocally(call, ...streams) {
  for (const stream of streams) stream?.getTracks().forEach((t) => t.stop());
  call?.pc.close();
}

/**
 * Why a call ended, for people. `role` is this page's; `hungUp` the role whose hang-up ended
 * it (from the 'left' event with reason 'requested'), if any.
 */
export function endText(reason, role, hungUp) {
  const other = role === 'merchant' ? 'the customer' : 'the merchant';
  switch (reason) {
    case 'missed': return role === 'merchant' ? 'Missed: the customer did not answer' : 'Missed video call';
    case 'declined': return role === 'merchant' ? 'Declined by the customer' : 'You declined the video call';
    case 'cancelled': return 'The call was cancelled before it was answered';
    case 'participant_left': return hungUp === role ? 'Call ended: you hung up' : `Call ended: ${other} hung up`;
    case 'transport_failed':
    case 'peer_lost': return `Call ended: the connection to ${other} was lost`;
    default: return `Call ended (${reason})`;
  }
}
