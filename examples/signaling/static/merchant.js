// The merchant console: send the "video explanation" invitation, talk with the camera on, see
// the customer's camera only once the customer turns it on, watch the call's quality, and read
// the call record at the end.
import {
  createCall, endText, hangUpLocally, join, onPageEvents, post, receiving, restartIceOnFailure,
} from '/static/call.js';

const $ = (id) => document.getElementById(id);
let call = null; // { pc, audio, video, remoteAudio, remoteVideo }
let local = null; // the merchant's microphone and camera
let ticker = null;
let lastStats = null;
let hungUp = null; // who hung up, from the 'left' event
// For the browser test and the devtools console: `await demo.pc.getStats()`, `demo.events`.
window.demo = { events: [] };

function setState(state, text) {
  document.body.dataset.call = state;
  $('status').textContent = text;
}

function say(text) {
  const p = document.createElement('p');
  p.className = 'msg me';
  p.textContent = text;
  $('chat').append(p);
}

function fail(error) {
  console.error(error);
  say(`⚠ ${error.message}`);
  finish();
}

// 1. The invitation: open the camera and microphone, join (shopcalld creates the call and the
//    card appears in the customer's chat), and ring.
$('invite').onclick = async () => {
  $('invite').disabled = true;
  $('record').hidden = true;
  try {
    local = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    call = createCall(local.getAudioTracks()[0], local.getVideoTracks()[0]);
    window.demo.pc = call.pc;
    $('self').srcObject = local;
    $('customer-audio').srcObject = call.remoteAudio;
    $('customer-video').srcObject = call.remoteVideo;
    restartIceOnFailure(call.pc, 'merchant');
    // The merchant's camera is its laptop's: the front lens, on at join.
    const joined = await join(call, '/api/merchant/invite', {
      audio: 'microphone', video: 'camera_front',
    });
    const caps = joined.constraints.camera;
    if (caps) {
      await local.getVideoTracks()[0].applyConstraints({
        width: { max: caps.maxWidth }, height: { max: caps.maxHeight },
        frameRate: { max: caps.maxFrameRate },
      });
    }
    $('call').hidden = false;
    showCustomerCamera(false);
    setState('ringing', 'Ringing: waiting for the customer to join…');
    say('Video explanation: invitation sent');
    ticker = setInterval(showReceiving, 1000);
  } catch (error) {
    fail(error);
  }
};

$('ask').onclick = () =>
  post('/api/merchant/request-camera')
    .then(() => say('You asked the customer to show the product'))
    .catch((error) => say(`⚠ ${error.message}`));

$('mute').onclick = () => {
  const mic = local?.getAudioTracks()[0];
  if (!mic) return;
  mic.enabled = !mic.enabled;
  $('mute').textContent = mic.enabled ? 'Mute' : 'Unmute';
};

// The call ends for both: the 'ended' event follows.
$('hang-up').onclick = () => post('/api/merchant/hang-up').catch(fail);

// 2. What happens in the call, from shopcalld's events.
onPageEvents('merchant', (e) => {
  window.demo.events.push({ at: Date.now(), ...e });
  switch (e.type) {
    case 'answered':
      setState('answered', `The customer joined after ${e.answerLatencySecs.toFixed(1)} s: connecting…`);
      break;
    case 'connected':
      setState('connected', 'Connected');
      break;
    case 'camera':
      if (e.role === 'customer') showCustomerCamera(e.on);
      break;
    case 'videoPaused':
    case 'videoResumed': {
      const banner = e.role === 'merchant' ? 'paused-to-me' : 'paused-to-customer';
      $(banner).hidden = e.type === 'videoResumed';
      break;
    }
    case 'layer':
      cell(e.role, 4).textContent = e.rid || 'single';
      break;
    case 'quality':
      showQuality(e);
      break;
    case 'left':
      if (e.reason === 'requested') hungUp = e.role;
      break;
    case 'ended':
      setState(e.reason === 'missed' || e.reason === 'declined' ? e.reason : 'ended',
        endText(e.reason, 'merchant', hungUp));
      say(endText(e.reason, 'merchant', hungUp));
      if (e.record) showRecord(e.record);
      finish();
      break;
    case 'error':
      setState('ended', e.message);
      finish();
      break;
  }
});

// Privacy: the customer's video is shown only once the customer turned the camera on (and
// shopcalld forwards nothing before that anyway).
function showCustomerCamera(on) {
  $('customer-video').hidden = !on;
  $('customer-camera').textContent = on
    ? 'The customer is showing the product (rear camera)'
    : "The customer's camera is off";
  $('ask').disabled = on;
  if (document.body.dataset.call === 'connected') {
    say(on ? 'The customer turned the camera on' : 'The customer turned the camera off');
  }
}

function cell(role, column) {
  return $(`q-${role}`).cells[column + 1];
}

const ms = (v) => (v == null ? '–' : `${v.toFixed(v < 10 ? 1 : 0)} ms`);

function showQuality(q) {
  cell(q.role, 0).textContent = ms(q.rttMs);
  cell(q.role, 1).textContent = q.lossPct == null ? '–' : `${q.lossPct.toFixed(1)} %`;
  cell(q.role, 2).textContent = ms(q.jitterMs);
  cell(q.role, 3).textContent = q.estimatedKbps == null ? '–' : `${q.estimatedKbps.toFixed(0)} kbit/s`;
  cell(q.role, 4).textContent = q.layer || '–'; // a simulcast rid; none for a single stream
  cell(q.role, 5).textContent = q.videoPaused ? 'paused: weak network' : 'flowing';
}

// What this browser receives now, from its own getStats().
async function showReceiving() {
  if (!call) return;
  lastStats = await receiving(call.pc, lastStats);
  $('receiving').textContent =
    `Receiving: audio ${lastStats.audioKbps.toFixed(0)} kbit/s, ` +
    `video ${lastStats.videoKbps.toFixed(0)} kbit/s (${lastStats.fps.toFixed(0)} fps), ` +
    `RTT ${ms(lastStats.rttMs)}`;
}

// 3. The record: what the platform scores the merchant on.
function showRecord(r) {
  window.demo.record = r;
  const s = (v) => (v == null ? '–' : `${v.toFixed(1)} s`);
  const direction = (d) =>
    `${d.averageKbps.toFixed(0)} kbit/s, loss ${d.lossPct.toFixed(1)} %, RTT ${ms(d.rttMs)}, ` +
    `jitter ${ms(d.jitterMs)}, ${d.freezes} freezes, video paused ${s(d.videoPausedSecs)}`;
  const rows = [
    ['Answer latency', r.answerLatencySecs == null ? 'not answered' : s(r.answerLatencySecs)],
    ['Rang for', s(r.ringSecs)],
    ['Duration', s(r.durationSecs)],
    ['Connected', s(r.connectedSecs)],
    ["Customer's camera", r.customerCameraUsed ? `${s(r.customerCameraSecs)} on` : 'never on'],
    ['Your camera', `${s(r.merchantCameraSecs)} on`],
    ['Customer → you', direction(r.toMerchant)],
    ['You → customer', direction(r.toCustomer)],
  ];
  $('record-fields').replaceChildren(...rows.flatMap(([name, value]) => {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = name;
    dd.textContent = value;
    return [dt, dd];
  }));
  $('record').hidden = false;
}

function finish() {
  clearInterval(ticker);
  hangUpLocally(call, local);
  call = local = lastStats = hungUp = null;
  $('call').hidden = true;
  $('invite').disabled = false;
  for (const id of ['paused-to-me', 'paused-to-customer']) $(id).hidden = true;
}
