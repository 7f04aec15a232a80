// The customer chat: the merchant's invitation card, joining with the microphone on and the
// camera OFF, and "Show the product" with the rear camera, only when the customer chooses.
import {
  createCall, endText, hangUpLocally, join, onPageEvents, post, restartIceOnFailure,
} from '/static/call.js';

const $ = (id) => document.getElementById(id);
let call = null; // { pc, audio, video, remoteAudio, remoteVideo }
let mic = null; // the microphone stream
let camera = null; // the camera stream, only while showing the product
let constraints = null; // what the Join answer says this client must apply
let card = null; // the invitation card of the current call
let hungUp = null; // who hung up, from the 'left' event
// For the browser test and the devtools console: `await demo.pc.getStats()`, `demo.events`.
window.demo = { events: [] };

function setState(state, text) {
  document.body.dataset.call = state;
  $('status').textContent = text;
}

function fail(error) {
  console.error(error);
  setCard('failed', `⚠ ${error.message}`);
  setState('ended', `⚠ ${error.message}`);
  finish();
}

onPageEvents('customer', (e) => {
  window.demo.events.push({ at: Date.now(), ...e });
  switch (e.type) {
    case 'invitation':
      showCard();
      break;
    case 'connected':
      setState('connected', 'Connected: your camera is off');
      break;
    case 'cameraRequested':
      $('prompt').hidden = camera !== null;
      break;
    case 'camera':
      if (e.role === 'customer') {
        showing(e.on);
        $('status').textContent = e.on
          ? 'Connected: you are showing the product'
          : 'Connected: your camera is off';
      }
      break;
    case 'videoPaused':
    case 'videoResumed':
      if (e.role === 'customer') $('paused').hidden = e.type === 'videoResumed';
      break;
    case 'left':
      if (e.reason === 'requested') hungUp = e.role;
      break;
    case 'ended': {
      const state = e.reason === 'missed' || e.reason === 'declined' ? e.reason : 'ended';
      setCard(state, endText(e.reason, 'customer', hungUp));
      setState(state, endText(e.reason, 'customer', hungUp));
      finish();
      break;
    }
    case 'error':
      setCard('ended', e.message);
      setState('ended', e.message);
      finish();
      break;
  }
});

// The invitation card, in the chat.
function showCard() {
  if (card?.dataset.state === 'ringing') return; // the same invitation, after a reconnect
  card = $('card-template').content.firstElementChild.cloneNode(true);
  card.querySelector('.join').onclick = () => joinCall().catch(fail);
  card.querySelector('.decline').onclick = () =>
    post('/api/customer/decline').catch((error) => setCard('ringing', `⚠ ${error.message}`));
  $('chat').append(card);
  setState('ringing', 'shop-7 invites you to a video call');
}

function setCard(state, text) {
  if (!card) return;
  card.dataset.state = state;
  card.querySelector('.text').textContent = text;
  if (state !== 'ringing') card.querySelector('.buttons')?.remove();
}

// "Join": microphone on, camera OFF. The offer still has a sendrecv video m-line with no
// track, declared as the rear camera, so showing the product later needs no renegotiation.
async function joinCall() {
  setCard('joining', 'Joining…');
  mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  call = createCall(mic.getAudioTracks()[0] /* no camera track */);
  window.demo.pc = call.pc;
  window.demo.call = call;
  $('merchant-video').srcObject = call.remoteVideo;
  $('merchant-audio').srcObject = call.remoteAudio;
  restartIceOnFailure(call.pc, 'customer');
  const joined = await join(call, '/api/customer/join', {
    audio: 'microphone', video: 'camera_rear',
  });
  constraints = joined.constraints; // e.g. camera: { facingMode: 'environment', onAtJoin: false }
  setCard('joined', 'You joined the video call');
  $('call').hidden = false;
  $('show').hidden = !constraints.camera?.mayTurnOn;
  setState('connecting', 'Connecting…');
}

// "Show the product": open the camera the Join answer asks for (facingMode 'environment':
// the rear lens), put it on the video m-line, then tell the platform, which calls SetCamera.
// shopcalld forwards the video only from then on.
async function showProduct() {
  const cam = constraints.camera;
  camera = await navigator.mediaDevices.getUserMedia({
    video: {
      // `ideal`: a phone opens its rear lens; a laptop with one camera still opens that one.
      facingMode: cam.facingMode ? { ideal: cam.facingMode } : undefined,
      width: { max: cam.maxWidth },
      height: { max: cam.maxHeight },
      frameRate: { max: cam.maxFrameRate },
    },
  });
  const track = camera.getVideoTracks()[0];
  window.demo.cameraTrack = track;
  await call.video.sender.replaceTrack(track);
  $('preview').srcObject = camera;
  await post('/api/customer/camera', { on: true });
}

// "Stop showing": nothing leaves the browser any more, the camera light goes off, and
// shopcalld drops anything that still arrives on the m-line.
async function stopShowing() {
  await call.video.sender.replaceTrack(null);
  camera?.getTracks().forEach((t) => t.stop());
  camera = null;
  await post('/api/customer/camera', { on: false });
}

function showing(on) {
  $('show').hidden = on || !constraints?.camera?.mayTurnOn;
  $('stop').hidden = !on;
  $('preview-box').hidden = !on;
  $('prompt').hidden = true;
}

$('show').onclick = () => showProduct().catch((error) => setState('connected', `⚠ ${error.message}`));
$('prompt-show').onclick = $('show').onclick;
$('prompt-dismiss').onclick = () => { $('prompt').hidden = true; };
$('stop').onclick = () => stopShowing().catch((error) => setState('connected', `⚠ ${error.message}`));

$('mute').onclick = () => {
  const track = mic?.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  $('mute').textContent = track.enabled ? 'Mute' : 'Unmute';
};

$('hang-up').onclick = () => post('/api/customer/hang-up').catch(fail);

function finish() {
  hangUpLocally(call, mic, camera);
  call = mic = camera = constraints = hungUp = null;
  $('call').hidden = true;
  $('paused').hidden = true;
  showing(false);
}
