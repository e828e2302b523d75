//! The hub's end of the sensors' tunnels: `GET /central/tunnel` upgrades to
//! a WebSocket once the sensor's login (its name, the time and their HMAC
//! with its secret) checks out; the registry then sends signed requests
//! over it and routes the answer frames back to the waiting download. Text
//! frames from the sensor are its live calls (`hub::live`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use voxtap_sensor::central::protocol::{self, FileRequest, Frame};

use crate::Shared;

/// Answer frames of one request: (kind, payload).
pub type Answer = mpsc::Receiver<(Frame, Vec<u8>)>;

/// The requests of one connection waiting for their answers, by id.
type Pending = Arc<Mutex<HashMap<u64, mpsc::Sender<(Frame, Vec<u8>)>>>>;

struct Conn {
    tx: mpsc::Sender<Message>,
    /// Waiting requests by id.
    pending: Pending,
    since: SystemTime,
    remote: String,
    /// Which connection of this sensor (a reconnect replaces the entry).
    generation: u64,
}

#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<String, Conn>>,
    next: AtomicU64,
}

/// A connected sensor, for the Sensors page.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Connected {
    pub sensor: String,
    pub since_unix: u64,
    pub remote: String,
}

impl Registry {
    pub fn connected(&self) -> Vec<Connected> {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<Connected> = conns
            .iter()
            .map(|(name, c)| Connected {
                sensor: name.clone(),
                since_unix: c
                    .since
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                remote: c.remote.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.sensor.cmp(&b.sensor));
        v
    }

    pub fn is_connected(&self, sensor: &str) -> bool {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(sensor)
    }

    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends `req` to `sensor`; None when the sensor is not connected.
    pub async fn request(&self, sensor: &str, req: &FileRequest) -> Option<Answer> {
        let (tx, pending) = {
            let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            let c = conns.get(sensor)?;
            (c.tx.clone(), c.pending.clone())
        };
        let (atx, arx) = mpsc::channel(8);
        pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req.id, atx);
        let text = serde_json::to_string(req).ok()?;
        if tx.send(Message::Text(text.into())).await.is_err() {
            pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req.id);
            return None;
        }
        Some(arx)
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `GET /central/tunnel`: a sensor logging in.
pub async fn connect(
    State(st): State<Shared>,
    ConnectInfo(remote): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(hub) = st.hub.clone() else {
        return (StatusCode::NOT_FOUND, "this server is not a hub").into_response();
    };
    let sensor = header(&headers, protocol::H_SENSOR)
        .unwrap_or("")
        .to_string();
    let time: u64 = header(&headers, protocol::H_TIME)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let sig = header(&headers, protocol::H_AUTH).unwrap_or("");
    let now = voxtap_sensor::status::now_unix();
    let ok = hub
        .secret(&sensor)
        .is_some_and(|s| protocol::login_ok(s, &sensor, time, sig, now));
    if !ok {
        tracing::warn!(target: "access", %remote, sensor = %sensor, "hub tunnel: login refused");
        return (StatusCode::UNAUTHORIZED, "tunnel login refused").into_response();
    }
    let remote = remote.ip().to_string();
    ws.on_upgrade(move |socket| serve(st, sensor, remote, socket))
}

async fn serve(st: Shared, sensor: String, remote: String, socket: WebSocket) {
    let Some(hub) = st.hub.clone() else {
        return;
    };
    let reg = &hub.tunnels;
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(32);
    let pending: Pending = Arc::default();
    let generation = reg.next_id();
    reg.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(
        sensor.clone(),
        Conn {
            tx,
            pending: pending.clone(),
            since: SystemTime::now(),
            remote: remote.clone(),
            generation,
        },
    );
    tracing::info!(target: "access", sensor = %sensor, %remote, "hub tunnel: sensor connected");
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        if let Message::Text(t) = &msg {
            // The sensor's live calls (hub/live.rs).
            hub.live.receive(&sensor, generation, t.as_str());
            continue;
        }
        let Message::Binary(b) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Some((id, kind, payload)) = protocol::parse_frame(&b) else {
            continue;
        };
        let waiter = {
            let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
            if kind == Frame::Data {
                p.get(&id).cloned()
            } else {
                p.remove(&id)
            }
        };
        if let Some(w) = waiter {
            // A download that went away just drops its frames.
            let _ = w.send((kind, payload.to_vec())).await;
        }
    }
    {
        let mut conns = reg.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns
            .get(&sensor)
            .is_some_and(|c| c.generation == generation)
        {
            conns.remove(&sensor);
        }
    }
    hub.live.forget(&sensor, generation);
    // Waiting downloads end with an error rather than hang.
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    writer.abort();
    tracing::info!(target: "access", sensor = %sensor, "hub tunnel: sensor disconnected");
}
