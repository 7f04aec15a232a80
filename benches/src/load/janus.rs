//! Janus: the same load against Janus's videoroom plugin, over Janus's HTTP API.
//!
//! A one-to-one call is one room with two publishers. Each participant has two peer
//! connections, as with any Janus videoroom client: a publisher (it offers, sendrecv audio +
//! VP8, Janus answers) and a subscriber to the other participant's feed (Janus offers, it
//! answers). Media and clients are the same as against shopcall; only the signaling differs.
//!
//! HTTP: one session, one long poll (`GET /janus/<session>?maxev=N`) that hands each event to
//! whoever waits for its transaction. Plugin requests answer `ack` at once and their result
//! comes as an event; `create` (a room) answers synchronously. A subscriber's `join` can fail
//! with "No such feed" (code 428) until the publisher's negotiation finished: retried.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::net::NetHandle;
use super::peer::PeerSpec;
use super::{CallHandle, CustomerCamera};

/// Janus videoroom error: no such feed (the publisher is not up yet).
const NO_SUCH_FEED: i64 = 428;
/// How long one request (or its asynchronous answer) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// A Janus server's HTTP API and one session on it.
#[derive(Clone)]
pub struct Janus {
    host: String,
    path: String,
    session: u64,
    /// The handle that creates rooms.
    admin: u64,
    waiters: Waiters,
    next: Arc<AtomicU64>,
    camera: CustomerCamera,
    stop: Arc<tokio::sync::Notify>,
}

/// What tearing down a Janus call needs.
#[derive(Debug, Clone)]
pub struct JanusCall {
    room: u64,
    handles: Vec<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A minimal HTTP/1.1 exchange (`Connection: close`): status and body.
async fn http(host: &str, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<Value> {
    let mut stream = TcpStream::connect(host)
        .await
        .with_context(|| format!("connecting to Janus at {host}"))?;
    stream.set_nodelay(true)?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .context("HTTP response without a header end")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("HTTP response without a status")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    if status != 200 {
        bail!("Janus answered HTTP {status} to {method} {path}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("Janus sent bad JSON: {body}"))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn janus_error(v: &Value) -> Option<(i64, String)> {
    if v["janus"] == "error" {
        return Some((
            v["error"]["code"].as_i64().unwrap_or(0),
            v["error"]["reason"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let data = &v["plugindata"]["data"];
    if data["videoroom"] == "event"
        && let Some(code) = data["error_code"].as_i64()
    {
        return Some((code, data["error"].as_str().unwrap_or("").to_owned()));
    }
    None
}

impl Janus {
    /// Connects: creates a session, attaches the room-creating handle, starts the long poll.
    /// `url` is the HTTP API root, e.g. `http://10.200.0.1:8088/janus`.
    pub async fn connect(url: &str, camera: CustomerCamera) -> anyhow::Result<Janus> {
        if camera == CustomerCamera::Dropped {
            bail!("Janus has no camera policy: use --customer-camera on or off against it");
        }
        let rest = url
            .strip_prefix("http://")
            .context("the Janus URL must start with http://")?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, "janus"));
        let mut janus = Janus {
            host: host.to_owned(),
            path: format!("/{}", path.trim_end_matches('/')),
            session: 0,
            admin: 0,
            waiters: Arc::default(),
            next: Arc::new(AtomicU64::new(1)),
            camera,
            stop: Arc::default(),
        };
        let created = janus
            .post(&janus.path.clone(), json!({"janus": "create"}))
            .await?;
        janus.session = created["data"]["id"]
            .as_u64()
            .context("Janus create: no session id")?;
        tokio::spawn(janus.clone().long_poll());
        janus.admin = janus.attach().await?;
        Ok(janus)
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    async fn post(&self, path: &str, mut body: Value) -> anyhow::Result<Value> {
        if body.get("transaction").is_none() {
            body["transaction"] = json!(self.transaction());
        }
        let v = http(&self.host, "POST", path, Some(&body.to_string())).await?;
        if let Some((code, reason)) = janus_error(&v) {
            bail!("Janus error {code}: {reason}");
        }
        Ok(v)
    }

    /// The event loop: every event that carries a transaction goes to its waiter.
    async fn long_poll(self) {
        let path = format!("{}/{}?maxev=50", self.path, self.session);
        loop {
            let got = tokio::select! {
                r = http(&self.host, "GET", &path, None) => r,
                () = self.stop.notified() => return,
            };
            let events = match got {
                Ok(Value::Array(a)) => a,
                Ok(v) => vec![v],
                Err(e) => {
                    tracing::debug!(error = %e, "Janus long poll");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            for ev in events {
                let Some(t) = ev["transaction"].as_str() else {
                    continue;
                };
                if let Some(tx) = lock(&self.waiters).remove(t) {
                    let _ = tx.send(ev);
                }
            }
        }
    }

    async fn attach(&self) -> anyhow::Result<u64> {
        let v = self
            .post(
                &format!("{}/{}", self.path, self.session),
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        v["data"]["id"].as_u64().context("attach: no handle id")
    }

    /// Sends a plugin message and returns its result: the synchronous answer, or the event
    /// that answers the `ack`.
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<Value> {
        let t = self.transaction();
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(t.clone(), tx);
        let mut msg = json!({"janus": "message", "transaction": t, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let path = format!("{}/{}/{}", self.path, self.session, handle);
        let v = match self.post(&path, msg).await {
            Ok(v) => v,
            Err(e) => {
                lock(&self.waiters).remove(&t);
                return Err(e);
            }
        };
        if v["janus"] != "ack" {
            lock(&self.waiters).remove(&t);
            return Ok(v);
        }
        let ev = tokio::time::timeout(REQUEST_TIMEOUT, rx)
            .await
            .map_err(|_| {
                lock(&self.waiters).remove(&t);
                anyhow!("Janus did not answer within {REQUEST_TIMEOUT:?}")
            })?
            .map_err(|_| anyhow!("the Janus event loop stopped"))?;
        if let Some((code, reason)) = janus_error(&ev) {
            bail!("Janus videoroom error {code}: {reason}");
        }
        Ok(ev)
    }

    /// Creates the room, publishes both participants and subscribes each to the other.
    pub async fn setup_call(&self, net: &NetHandle, index: u64) -> anyhow::Result<CallHandle> {
        let created = Instant::now();
        let room = 1_000_000 + index;
        self.message(
            self.admin,
            json!({
                "request": "create", "room": room, "publishers": 2, "is_private": true,
                "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0, "fir_freq": 0,
                "notify_joining": false, "permanent": false,
            }),
            None,
        )
        .await
        .context("creating the room")?;
        let mut handle = CallHandle {
            id: room.to_string(),
            created,
            peers: Vec::new(),
            receivers: Vec::new(),
            janus: Some(JanusCall {
                room,
                handles: Vec::new(),
            }),
        };
        let feeds = [room * 10 + 1, room * 10 + 2];
        for (i, feed) in feeds.iter().enumerate() {
            let video = i == 0 || self.camera == CustomerCamera::On;
            let spec = PeerSpec {
                offerer: true,
                audio: true,
                video,
                audio_forwarded: true,
                video_forwarded: true,
            };
            let (key, offer) = net.add(spec).await?;
            handle.peers.push(key);
            let h = self.attach().await?;
            if let Some(j) = &mut handle.janus {
                j.handles.push(h);
            }
            let ev = self
                .message(
                    h,
                    json!({
                        "request": "joinandconfigure", "room": room, "ptype": "publisher",
                        "id": feed, "audio": true, "video": video,
                    }),
                    Some(json!({"type": "offer", "sdp": offer, "trickle": false})),
                )
                .await
                .context("publishing")?;
            let sdp = ev["jsep"]["sdp"]
                .as_str()
                .context("the publisher's answer has no SDP")?;
            net.accept_answer(key, sdp.to_owned()).await?;
        }
        for (i, _) in feeds.iter().enumerate() {
            let other = feeds[1 - i];
            let h = self.attach().await?;
            if let Some(j) = &mut handle.janus {
                j.handles.push(h);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            let ev = loop {
                match self
                    .message(
                        h,
                        json!({
                            "request": "join", "room": room, "ptype": "subscriber",
                            "streams": [{"feed": other}],
                        }),
                        None,
                    )
                    .await
                {
                    Ok(ev) => break ev,
                    Err(e)
                        if e.to_string().contains(&format!("error {NO_SUCH_FEED}"))
                            && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e.context("subscribing")),
                }
            };
            let offer = ev["jsep"]["sdp"]
                .as_str()
                .context("the subscription has no SDP offer")?;
            let spec = PeerSpec {
                offerer: false,
                audio: false,
                video: false,
                audio_forwarded: false,
                video_forwarded: false,
            };
            let (key, _) = net.add(spec).await?;
            handle.peers.push(key);
            handle.receivers.push(key);
            let answer = net.answer_offer(key, offer.to_owned()).await?;
            self.message(
                h,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
            )
            .await
            .context("starting the subscription")?;
        }
        Ok(handle)
    }

    /// Destroys the call's room and detaches its handles.
    pub async fn end_call(&self, call: &CallHandle) -> anyhow::Result<()> {
        let Some(j) = &call.janus else { return Ok(()) };
        for h in &j.handles {
            let _ = self
                .post(
                    &format!("{}/{}/{}", self.path, self.session, h),
                    json!({"janus": "detach"}),
                )
                .await;
        }
        self.message(
            self.admin,
            json!({"request": "destroy", "room": j.room}),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Destroys the session and stops the long poll.
    pub async fn close(&self) {
        self.stop.notify_waiters();
        let _ = self
            .post(
                &format!("{}/{}", self.path, self.session),
                json!({"janus": "destroy"}),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }

    #[test]
    fn recognises_errors() {
        let v = json!({"janus": "event", "plugindata": {"plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "event", "error_code": 428, "error": "No such feed (5)"}}});
        assert_eq!(janus_error(&v), Some((428, "No such feed (5)".to_owned())));
        assert_eq!(janus_error(&json!({"janus": "ack"})), None);
        let e = json!({"janus": "error", "error": {"code": 458, "reason": "No such session"}});
        assert_eq!(janus_error(&e).map(|e| e.0), Some(458));
    }
}
