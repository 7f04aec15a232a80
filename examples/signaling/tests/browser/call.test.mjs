// A real call in headless Chromium: the merchant console and the customer chat of the
// signaling example, in two browser profiles, through the real shopcalld, checked with the
// pages' own RTCPeerConnection.getStats().
//
// Run by `cargo test -p shopcall-signaling-example --test browser` (tests/browser.rs), which
// builds the binaries and sets the environment, or by hand from this directory:
//
//   SHOPCALLD=../../../../target/debug/shopcalld \
//   SIGNALING=../../../../target/debug/shopcall-signaling node call.test.mjs
//
// Environment: SHOPCALLD and SIGNALING (the two binaries, required); CHROMIUM (default
// /usr/bin/chromium); ARTIFACTS (screenshots, summary.json; default ./artifacts).
// Everything listens on 127.0.0.1 with ports the OS picks. Exits 0 when every check passed.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const env = process.env;
const SHOPCALLD = env.SHOPCALLD;
const SIGNALING = env.SIGNALING;
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = resolve(env.ARTIFACTS || 'artifacts');
const RING_TIMEOUT_SECS = 4; // short, for the missed-call check
const DEADLINE_MS = 110_000; // the whole test, start to finish

// Chromium as CI runs it: no GPU, no network chatter, fake camera and microphone that need no
// permission prompt, WebRTC allowed on loopback with real (not mDNS) host candidates.
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--autoplay-policy=no-user-gesture-required',
];

const started = Date.now();
const processes = [];
const contexts = [];
const profiles = [];
const pageErrors = [];
const summary = { checks: [] };

function log(message) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${message}`);
}

function check(name, ok, numbers) {
  summary.checks.push({ name, ok, ...numbers });
  log(`${ok ? 'ok  ' : 'FAIL'} ${name} ${JSON.stringify(numbers)}`);
  assert.ok(ok, `${name}: ${JSON.stringify(numbers)}`);
}

// ----- processes ------------------------------------------------------------------------

/** Starts a program and resolves with `found(line)`'s first non-null value on its stdout. */
function start(name, program, args, found) {
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const entry = { name, child, lines: [] };
  processes.push(entry);
  return new Promise((done, failed) => {
    const timer = setTimeout(() => failed(new Error(`${name} did not start within 20 s`)), 20_000);
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        entry.lines.push(line);
        const value = found(line);
        if (value) {
          clearTimeout(timer);
          done(value);
        }
      });
    }
    child.on('exit', (code) => failed(new Error(`${name} exited with ${code}`)));
    child.on('error', failed);
  });
}

/** shopcalld logs JSON; the two "listening" lines carry the bound addresses. */
async function startShopcalld() {
  const addresses = {};
  await start('shopcalld', SHOPCALLD, [
    '--grpc-listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0',
    '--udp-bind', '127.0.0.1:0', '--announce-ip', '127.0.0.1', '--log-format', 'json',
  ], (line) => {
    try {
      const { fields } = JSON.parse(line);
      if (fields?.message?.startsWith('gRPC listening')) addresses.grpc = fields.addr;
      if (fields?.message?.startsWith('metrics listening')) addresses.metrics = fields.addr;
    } catch { /* not JSON */ }
    return addresses.grpc && addresses.metrics ? addresses : null;
  });
  return addresses;
}

async function stopAll() {
  await Promise.allSettled(contexts.map((c) => c.close()));
  for (const { child } of processes) {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
  await sleep(300);
  for (const { child } of processes) {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  for (const profile of profiles) {
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    } catch (error) {
      log(`cannot remove ${profile}: ${error.message}`);
    }
  }
}

async function metric(metricsAddr, name) {
  const text = await (await fetch(`http://${metricsAddr}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

// ----- browsers -------------------------------------------------------------------------

/** A fresh browser profile (its own --user-data-dir) with one page on `url`. */
async function openPage(name, url) {
  const profile = mkdtempSync(join(tmpdir(), `shopcall-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 820, height: 900 },
  });
  contexts.push(context);
  profiles.push(profile);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && log(`${name} console: ${m.text()}`));
  await page.goto(url);
  return page;
}

/** Sums the page's own inbound-rtp (or outbound-rtp) stats of one kind. */
function rtp(page, type, kind) {
  return page.evaluate(async ([type, kind]) => {
    const sum = { packets: 0, frames: 0, framesDecoded: 0, bytes: 0 };
    const pc = window.demo.pc;
    if (!pc) return sum;
    (await pc.getStats()).forEach((s) => {
      if (s.type !== type || s.kind !== kind) return;
      sum.packets += (type === 'inbound-rtp' ? s.packetsReceived : s.packetsSent) ?? 0;
      sum.bytes += (type === 'inbound-rtp' ? s.bytesReceived : s.bytesSent) ?? 0;
      sum.frames += (type === 'inbound-rtp' ? s.framesReceived : s.framesEncoded) ?? 0;
      sum.framesDecoded += s.framesDecoded ?? 0;
    });
    return sum;
  }, [type, kind]);
}

const inbound = (page, kind) => rtp(page, 'inbound-rtp', kind);
const outbound = (page, kind) => rtp(page, 'outbound-rtp', kind);

async function until(what, probe, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * shopcalld may pause video to a participant for a "weak network", even on loopback when the
 * machine is very busy (a downlink estimate built from little traffic is low). Video checks
 * then wait for it to resume, with its hysteresis, and the summary says so (weakNetwork).
 * The merchant's page hears every participant's VideoPaused / VideoResumed.
 */
const pausedFor = (role) => merchantPage.evaluate((role) => {
  const last = window.demo.events.findLast((e) => e.role === role && e.type.startsWith('video'));
  return last?.type === 'videoPaused';
}, role);
let merchantPage = null;

async function waitOutWeakNetworkPause(role) {
  if (!(await pausedFor(role))) return;
  const pausedAt = Date.now();
  await until(`shopcalld to resume the video to the ${role}`, async () => !(await pausedFor(role)),
    30_000);
  const ms = Date.now() - pausedAt;
  (summary.weakNetwork ??= []).push({ role, resumedAfterMs: ms });
  log(`WARN shopcalld paused video to the ${role} on loopback for a weak network; ` +
    `resumed after ${ms} ms`);
  await sleep(1000);
}

const callState = (page, state) =>
  page.waitForSelector(`body[data-call="${state}"]`, { timeout: 10_000 });

// ----- the test -------------------------------------------------------------------------

async function main() {
  assert.ok(SHOPCALLD && SIGNALING, 'set SHOPCALLD and SIGNALING to the two binaries');
  mkdirSync(ARTIFACTS, { recursive: true });

  const daemon = await startShopcalld();
  const base = await start('signaling', SIGNALING, [
    '--grpc', `http://${daemon.grpc}`, '--listen', '127.0.0.1:0',
    '--ring-timeout-secs', String(RING_TIMEOUT_SECS),
  ], (line) => line.match(/^listening on (http:\/\/\S+)/)?.[1]);
  log(`shopcalld gRPC ${daemon.grpc}, metrics ${daemon.metrics}; example service ${base}`);

  const [merchant, customer] = await Promise.all([
    openPage('merchant', `${base}/merchant`),
    openPage('customer', `${base}/customer`),
  ]);
  merchantPage = merchant;
  log('both pages open');

  // The invitation card, and joining with the microphone on and the camera off.
  await merchant.click('#invite');
  await callState(merchant, 'ringing');
  await customer.click('.card[data-state="ringing"] .join', { timeout: 10_000 });
  await Promise.all([callState(merchant, 'connected'), callState(customer, 'connected')]);
  const transceiver = await customer.evaluate(() => ({
    direction: window.demo.call.video.currentDirection,
    track: window.demo.call.video.sender.track,
  }));
  check('the customer joins with a sendrecv video m-line and no camera track',
    transceiver.direction === 'sendrecv' && transceiver.track === null, transceiver);

  // 1. Audio flows both ways.
  const audioBefore = [await inbound(merchant, 'audio'), await inbound(customer, 'audio')];
  await sleep(2000);
  const audioAfter = [await inbound(merchant, 'audio'), await inbound(customer, 'audio')];
  const toMerchant = audioAfter[0].packets - audioBefore[0].packets;
  const toCustomer = audioAfter[1].packets - audioBefore[1].packets;
  check('1. audio flows both ways (inbound-rtp audio packetsReceived rising, 2 s)',
    toMerchant > 40 && toCustomer > 40,
    { customerToMerchantPackets: toMerchant, merchantToCustomerPackets: toCustomer });
  await waitOutWeakNetworkPause('customer');
  const merchantVideoAtCustomer = await inbound(customer, 'video');
  await sleep(2000);
  const merchantVideo = (await inbound(customer, 'video')).framesDecoded
    - merchantVideoAtCustomer.framesDecoded;
  check("the customer sees the merchant's camera (on at join)", merchantVideo > 10,
    { framesDecodedIn2s: merchantVideo });

  // 2. Before "Show the product", the merchant receives no customer video at all.
  await sleep(1000);
  const dark = await inbound(merchant, 'video');
  const shown = await merchant.isVisible('#customer-video');
  check('2. the merchant receives no customer video before "Show the product"',
    dark.frames === 0 && dark.framesDecoded === 0 && !shown,
    { packetsReceived: dark.packets, framesReceived: dark.frames,
      framesDecoded: dark.framesDecoded, videoElementShown: shown });

  // 2b. Not even when the customer's page misbehaves and sends video without SetCamera: the
  //     server drops it (policy_denied).
  const deniedBefore = await metric(daemon.metrics,
    'shopcall_dropped_packets_total{reason="policy_denied"}');
  await customer.evaluate(async () => {
    const canvas = Object.assign(document.createElement('canvas'), { width: 320, height: 240 });
    const g = canvas.getContext('2d');
    window.demo.rogueTimer = setInterval(() => {
      g.fillStyle = `hsl(${Date.now() % 360} 80% 50%)`;
      g.fillRect(0, 0, 320, 240);
    }, 50);
    window.demo.rogue = canvas.captureStream(20).getVideoTracks()[0];
    await window.demo.call.video.sender.replaceTrack(window.demo.rogue);
  });
  await sleep(2500);
  const rogueSent = await outbound(customer, 'video');
  const rogueSeen = await inbound(merchant, 'video');
  const deniedAfter = await metric(daemon.metrics,
    'shopcall_dropped_packets_total{reason="policy_denied"}');
  await customer.evaluate(async () => {
    await window.demo.call.video.sender.replaceTrack(null);
    window.demo.rogue.stop();
    clearInterval(window.demo.rogueTimer);
  });
  check('2b. video a customer page sends without SetCamera never reaches the merchant',
    rogueSent.packets > 20 && rogueSeen.frames === 0 && rogueSeen.framesDecoded === 0
      && deniedAfter - deniedBefore > 20,
    { customerPacketsSent: rogueSent.packets, merchantFramesReceived: rogueSeen.frames,
      merchantFramesDecoded: rogueSeen.framesDecoded,
      policyDeniedDrops: deniedAfter - deniedBefore });

  // The merchant asks; the customer sees the prompt and shows the product.
  await merchant.click('#ask');
  await customer.waitForSelector('#prompt', { state: 'visible', timeout: 5000 });
  check('"Ask to show the product" prompts the customer', true, {});
  const cameraOnAt = Date.now();
  await customer.click('#prompt-show');
  await merchant.waitForSelector('#customer-video', { state: 'visible', timeout: 5000 });
  const grantSeenAt = Date.now(); // the merchant's page got CameraChanged(on)
  const constraint = await customer.evaluate(() => window.demo.cameraTrack.getConstraints());
  // Chrome reports {ideal: 'environment'} back as the bare value, which means the same.
  const facing = constraint.facingMode?.ideal ?? constraint.facingMode;
  check('the customer opens the camera with facingMode {ideal: "environment"}',
    facing === 'environment', { facingMode: constraint.facingMode });

  // 3. The merchant decodes the customer's video.
  await until('the first customer frame at the merchant (or a pause)', async () =>
    (await inbound(merchant, 'video')).framesDecoded > 0 || pausedFor('merchant'), 5000);
  const msToFirstFrame = Date.now() - cameraOnAt;
  await sleep(1000);
  await waitOutWeakNetworkPause('merchant');
  const showing1 = await inbound(merchant, 'video');
  await sleep(2000);
  const showing2 = await inbound(merchant, 'video');
  check('3. after "Show the product" the merchant decodes customer video (framesDecoded rising)',
    showing2.framesDecoded - showing1.framesDecoded > 10,
    { msToFirstFrame, framesDecodedIn2s: showing2.framesDecoded - showing1.framesDecoded,
      pausedForWeakNetwork: Boolean(summary.weakNetwork?.some((p) => p.role === 'merchant')) });

  // Mid-call: live quality from shopcalld's Quality events, then screenshots.
  await until('live quality on the merchant console', () =>
    merchant.evaluate(() => ['#q-merchant td', '#q-customer td']
      .every((cell) => /ms$/.test(document.querySelector(cell).textContent))),
  12_000);
  const quality = await merchant.evaluate(() =>
    [...document.querySelectorAll('#quality tbody tr')].map((r) => r.innerText.split('\t')));
  check('the merchant console shows live quality (RTT, loss, downlink, layer, video state)',
    quality.length === 2, { quality });
  await merchant.screenshot({ path: join(ARTIFACTS, 'merchant.png'), fullPage: true });
  await customer.screenshot({ path: join(ARTIFACTS, 'customer.png'), fullPage: true });
  log(`screenshots in ${ARTIFACTS}`);

  // 4. "Stop showing": the merchant's framesDecoded stops rising.
  await customer.click('#stop');
  const cameraOffAt = Date.now();
  await merchant.waitForSelector('#customer-video', { state: 'hidden', timeout: 5000 });
  const revokeSeenAt = Date.now(); // CameraChanged(off)
  // Frames already on their way or in the merchant's jitter buffer are still decoded (a busy
  // machine may take a moment): wait until nothing moved for half a second, then watch 2 s.
  const settled = await until('the merchant to finish what had arrived', async () => {
    const a = await inbound(merchant, 'video');
    await sleep(500);
    const b = await inbound(merchant, 'video');
    return a.framesDecoded === b.framesDecoded && a.packets === b.packets && b;
  }, 5000);
  const settleMs = Date.now() - cameraOffAt;
  await sleep(2000);
  const stopped = await inbound(merchant, 'video');
  const cameraLight = await customer.evaluate(() => window.demo.cameraTrack.readyState);
  check('4. after "Stop showing" the merchant\'s framesDecoded stops rising (2 s)',
    stopped.framesDecoded === settled.framesDecoded && stopped.packets === settled.packets
      && settleMs < 4000 && cameraLight === 'ended',
    { settledAfterMs: settleMs, framesDecodedIn2s: stopped.framesDecoded - settled.framesDecoded,
      packetsIn2s: stopped.packets - settled.packets, customerCameraTrack: cameraLight });

  // 5. Hang up: both pages end, the merchant gets the record.
  await merchant.click('#hang-up');
  await Promise.all([callState(merchant, 'ended'), callState(customer, 'ended')]);
  await merchant.waitForSelector('#record', { state: 'visible', timeout: 5000 });
  const record = await merchant.evaluate(() => window.demo.record);
  // shopcalld's camera stopwatch ran from SetCamera(on), after the "Show" click and before
  // the merchant's page saw the grant, to SetCamera(off), after the "Stop" click and before
  // the page saw it end: the record's camera time lies between those bounds.
  const cameraSecs = {
    atLeast: (cameraOffAt - grantSeenAt) / 1000 - 0.25,
    atMost: (revokeSeenAt - cameraOnAt) / 1000 + 0.25,
  };
  check('5. hang up ends the call on both pages and the merchant sees the record',
    record.answerLatencySecs > 0 && record.connectedSecs > 5 && record.customerCameraUsed
      && record.customerCameraSecs >= cameraSecs.atLeast
      && record.customerCameraSecs <= cameraSecs.atMost
      && record.toMerchant.packets > 0 && record.toCustomer.packets > 0,
    { answerLatencySecs: record.answerLatencySecs, durationSecs: record.durationSecs,
      connectedSecs: record.connectedSecs, customerCameraSecs: record.customerCameraSecs,
      cameraSecsMeasuredByTheTest: cameraSecs, toMerchant: record.toMerchant,
      toCustomer: record.toCustomer });
  check('the customer chat shows the call ended',
    await customer.isVisible('.card[data-state="ended"]'), {});
  await merchant.screenshot({ path: join(ARTIFACTS, 'merchant-record.png'), fullPage: true });

  // Declined.
  await merchant.click('#invite');
  await customer.click('.card[data-state="ringing"] .decline', { timeout: 10_000 });
  await callState(merchant, 'declined');
  await customer.waitForSelector('.card[data-state="declined"]', { timeout: 5000 });
  const declined = await merchant.evaluate(() => window.demo.record);
  check('a declined invitation shows as declined on both pages, never answered',
    declined.answerLatencySecs === null, { ringSecs: declined.ringSecs });

  // Missed: nobody answers within the ring timeout.
  await merchant.click('#invite');
  await customer.waitForSelector('.card[data-state="ringing"]', { timeout: 10_000 });
  const ringFrom = Date.now();
  await merchant.waitForSelector('body[data-call="missed"]', { timeout: (RING_TIMEOUT_SECS + 5) * 1000 });
  await customer.waitForSelector('.card[data-state="missed"]', { timeout: 5000 });
  const missed = await merchant.evaluate(() => window.demo.record);
  check('an unanswered invitation shows as missed on both pages after the ring timeout',
    missed.answerLatencySecs === null && Math.abs(missed.ringSecs - RING_TIMEOUT_SECS) < 1,
    { ringSecs: missed.ringSecs, waitedSecs: (Date.now() - ringFrom) / 1000 });

  await customer.screenshot({ path: join(ARTIFACTS, 'customer-history.png'), fullPage: true });

  const outcomes = await Promise.all(['answered', 'declined', 'missed'].map((o) =>
    metric(daemon.metrics, `shopcall_call_outcomes_total{outcome="${o}"}`)));
  check("shopcalld's metrics count one answered, one declined, one missed call",
    outcomes.join() === '1,1,1', { outcomes });
  check('no uncaught error on either page', pageErrors.length === 0, { pageErrors });
}

// Whatever happens, no daemon outlives the test.
process.on('exit', () => {
  for (const { child } of processes) if (child.exitCode === null) child.kill('SIGKILL');
});

const deadline = setTimeout(() => {
  console.error(`FAIL: the browser test took more than ${DEADLINE_MS / 1000} s`);
  stopAll().finally(() => process.exit(1));
}, DEADLINE_MS);

try {
  await main();
  summary.ok = true;
  summary.seconds = (Date.now() - started) / 1000;
  writeFileSync(join(ARTIFACTS, 'summary.json'), JSON.stringify(summary, null, 2));
  log(`PASS: ${summary.checks.length} checks in ${summary.seconds.toFixed(1)} s`);
  await stopAll();
  clearTimeout(deadline);
} catch (error) {
  console.error(`FAIL: ${error.stack ?? error}`);
  for (const [i, context] of contexts.entries()) {
    await context.pages()[0]?.screenshot({ path: join(ARTIFACTS, `failure-${i}.png`) }).catch(() => {});
  }
  for (const { name, lines } of processes) {
    console.error(`----- ${name} output (last 40 lines) -----\n${lines.slice(-40).join('\n')}`);
  }
  summary.ok = false;
  summary.error = String(error);
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(join(ARTIFACTS, 'summary.json'), JSON.stringify(summary, null, 2));
  await stopAll();
  clearTimeout(deadline);
  process.exitCode = 1;
}
