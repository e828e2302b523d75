//! The sensor's end of the hub tunnel: a WebSocket over TLS that the sensor
//! opens to the hub (no inbound port on a sensor in a mirror network), over
//! which the hub asks for call files (see [`super::protocol`]).
//!
//! Each request is checked (signature with the sensor's secret, expiry),
//! logged (the `access` log target and the local index's access log, as
//! `hub:<user>`), and answered only with a file of a call in the sensor's
//! own index: the file name is a plain name in that call's folder, resolved
//! inside the data directory. A file uploaded to S3 and deleted locally is
//! read back from S3 through the folder's manifest, as the local web UI
//! does.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::protocol::{self, FileRequest, Frame};
use super::{CentralError, pg};
use voxtap_engine::index::{AccessEntry, CallQuery, INDEX_FILE, Index};

/// What the tunnel needs.
#[derive(Clone, Debug)]
pub struct TunnelOptions {
    /// `wss://host:port` (or `ws://` on loopback for tests).
    pub hub_url: String,
    /// The CA that signed the hub's certificate (None: the system's).
    pub ca: Option<PathBuf>,
    pub sensor_id: String,
    pub secret: Vec<u8>,
    /// The data directory: `index.sqlite` and the call folders.
    pub data: PathBuf,
    /// Caps of each live push (`[central] live_max_*`).
    pub live_caps: protocol::LiveCaps,
}

impl TunnelOptions {
    pub fn from_config(cfg: &crate::Config) -> Result<Option<TunnelOptions>, CentralError> {
        let c = &cfg.central;
        if c.hub_url.is_empty() {
            return Ok(None);
        }
        Ok(Some(TunnelOptions {
            hub_url: c.hub_url.clone(),
            ca: c.ca.clone(),
            sensor_id: c.sensor_id.clone(),
            secret: c.secret()?,
            data: cfg.output.dir.clone(),
            live_caps: c.live_caps()?,
        }))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// (tls, host, port) of `ws[s]://host[:port][/...]`.
fn parse_url(url: &str) -> Result<(bool, String, u16), CentralError> {
    let bad = || CentralError::Config(format!("central.hub_url {url:?}: use wss://host:port"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let auth = rest.split('/').next().unwrap_or("");
    let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(bad)?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (auth.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None if tls => 443,
        None => 80,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((tls, host, port))
}

async fn connect(o: &TunnelOptions) -> Result<Ws, CentralError> {
    let (tls, host, port) = parse_url(&o.hub_url)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| CentralError::Tunnel(format!("{}: {e}", o.hub_url)))?;
    let stream: Box<dyn Io> = if tls {
        let roots = pg::root_store(o.ca.as_deref())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CentralError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
            Err(_) => rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| CentralError::Tls(e.to_string()))?,
        };
        let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| CentralError::Tls(format!("{}: {e}", o.hub_url)))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let scheme = if tls { "wss" } else { "ws" };
    let url = format!("{scheme}://{host}:{port}{}", protocol::PATH);
    let mut req = url
        .into_client_request()
        .map_err(|e| CentralError::Tunnel(e.to_string()))?;
    let now = crate::status::now_unix();
    let h = req.headers_mut();
    let hv = |s: String| HeaderValue::from_str(&s).map_err(|e| CentralError::Tunnel(e.to_string()));
    h.insert(protocol::H_SENSOR, hv(o.sensor_id.clone())?);
    h.insert(protocol::H_TIME, hv(now.to_string())?);
    h.insert(
        protocol::H_AUTH,
        hv(protocol::login_sig(&o.secret, &o.sensor_id, now))?,
    );
    let (ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| CentralError::Tunnel(format!("{}: {e}", o.hub_url)))?;
    Ok(ws)
}

/// Serves the hub's requests until the connection ends or `stop`.
async fn serve(ws: Ws, o: &TunnelOptions, stop: &AtomicBool) -> Result<(), CentralError> {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    let mut live = tokio::time::interval(protocol::LIVE_EVERY);
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = ping.tick() => {
                let _ = tx.send(Message::Ping(Vec::new().into())).await;
                continue;
            }
            _ = live.tick() => {
                push_live(o, &tx).await;
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let (o, tx) = (o.clone(), tx.clone());
                tokio::task::spawn_blocking(move || answer(&o, t.as_str(), &tx));
            }
            Some(Ok(Message::Close(_))) | None => break Ok(()),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(CentralError::Tunnel(e.to_string())),
        }
    };
    drop(tx);
    let _ = writer.await;
    result
}

/// Sends the live calls snapshot `voxtap run` keeps in the data directory,
/// if any; skipped when the connection is busy (files in flight): the next
/// second brings a newer one.
async fn push_live(o: &TunnelOptions, tx: &mpsc::Sender<Message>) {
    let (data, caps) = (o.data.clone(), o.live_caps);
    let text = tokio::task::spawn_blocking(move || crate::status::read_live_calls(&data))
        .await
        .ok()
        .flatten()
        .and_then(|f| protocol::live_push(f, caps));
    if let Some(t) = text {
        let _ = tx.try_send(Message::Text(t.into()));
    }
}

/// Answers one request (on a blocking thread): the file in data frames and
/// an end frame, or one error frame.
fn answer(o: &TunnelOptions, text: &str, tx: &mpsc::Sender<Message>) {
    let send = |id: u64, kind: Frame, payload: &[u8]| {
        tx.blocking_send(Message::Binary(protocol::frame(id, kind, payload).into()))
            .is_ok()
    };
    let req: FileRequest = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(target: "access", error = %e, "hub tunnel: unreadable request");
            return;
        }
    };
    let id = req.id;
    match open(o, &req) {
        Ok(Body::File(mut f)) => {
            use std::io::Read;
            let mut buf = vec![0u8; protocol::CHUNK];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if !send(id, Frame::Data, &buf[..n]) {
                            return;
                        }
                    }
                    Err(e) => {
                        send(id, Frame::Failed, e.to_string().as_bytes());
                        return;
                    }
                }
            }
            send(id, Frame::End, b"");
        }
        Ok(Body::Bytes(b)) => {
            for c in b.chunks(protocol::CHUNK) {
                if !send(id, Frame::Data, c) {
                    return;
                }
            }
            send(id, Frame::End, b"");
        }
        Err((kind, msg)) => {
            send(id, kind, msg.as_bytes());
        }
    }
}

enum Body {
    File(std::fs::File),
    Bytes(Vec<u8>),
}

/// A plain file name: one component, not hidden.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

/// Checks, logs and opens what `req` asks for.
fn open(o: &TunnelOptions, req: &FileRequest) -> Result<Body, (Frame, String)> {
    let refuse = |why: &str| {
        tracing::warn!(target: "access", user = %req.user, path = %req.path(), why, "hub tunnel: request refused");
        (Frame::Refused, format!("refused: {why}"))
    };
    req.check(&o.secret, crate::status::now_unix())
        .map_err(&refuse)?;
    if !plain_name(&req.name) {
        return Err(refuse("not a plain file name"));
    }
    let failed = |e: &dyn std::fmt::Display| (Frame::Failed, e.to_string());
    let mut idx = Index::open(&o.data.join(INDEX_FILE)).map_err(|e| failed(&e))?;
    let page = idx
        .search(&CallQuery {
            call_id: Some(req.call_id.clone()),
            limit: 1000,
            ..Default::default()
        })
        .map_err(|e| failed(&e))?;
    // The central index holds microseconds.
    let call = page
        .rows
        .into_iter()
        .find(|c| c.start_ns / 1000 == req.start_ns / 1000 && c.call_id == req.call_id);
    let (local_id, folder) = match call {
        Some(c) => (c.id, c.folder),
        None => return Err((Frame::NotFound, "no such call on this sensor".into())),
    };
    tracing::info!(target: "access", user = %format!("hub:{}", req.user), path = %req.path(), "hub tunnel: file request");
    let entry = AccessEntry {
        ts_ns: crate::status::now_unix() * 1_000_000_000,
        user: format!("hub:{}", req.user),
        remote: "hub tunnel".into(),
        action: "download".into(),
        call: Some(local_id),
        detail: req.name.clone(),
    };
    if let Err(e) = idx.log_access(&entry) {
        tracing::error!("writing the access log: {e}");
    }
    let folder = folder.ok_or((Frame::NotFound, "the call has no folder".into()))?;
    resolve(&o.data, &folder, &req.name)
}

/// `name` in the call folder `folder` inside `data`, or from S3 through the
/// folder's manifest.
fn resolve(data: &Path, folder: &str, name: &str) -> Result<Body, (Frame, String)> {
    let not_found = || (Frame::NotFound, format!("no {name} for this call"));
    let data = data.canonicalize().map_err(|_| not_found())?;
    let rel = Path::new(folder);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err((Frame::Refused, "bad folder".into()));
    }
    let dir = data.join(rel).canonicalize().map_err(|_| not_found())?;
    if !dir.starts_with(&data) {
        return Err((Frame::Refused, "folder outside the data directory".into()));
    }
    match dir.join(name).canonicalize() {
        Ok(f) if f.parent() == Some(dir.as_path()) && f.is_file() => std::fs::File::open(&f)
            .map(Body::File)
            .map_err(|_| not_found()),
        Ok(_) => Err((Frame::Refused, "not a file of this call's folder".into())),
        Err(_) => {
            let m = crate::upload::manifest::Manifest::load(&dir).ok_or_else(not_found)?;
            if !m.files.contains_key(name) {
                return Err(not_found());
            }
            m.fetch(name)
                .map(Body::Bytes)
                .map_err(|e| (Frame::Failed, format!("reading {name} from S3: {e}")))
        }
    }
}

/// Keeps the tunnel up until `stop`: reconnects with backoff (1 s doubling
/// to 30 s) whenever the hub is away.
pub async fn run(o: TunnelOptions, stop: Arc<AtomicBool>) {
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        match connect(&o).await {
            Ok(ws) => {
                tracing::info!(hub = %o.hub_url, "hub tunnel open");
                backoff = Duration::from_secs(1);
                if let Err(e) = serve(ws, &o, &stop).await {
                    tracing::warn!(error = %e, "hub tunnel closed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_s = backoff.as_secs(), "hub tunnel: cannot connect");
            }
        }
        let until = tokio::time::Instant::now() + backoff;
        while tokio::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The tunnel as a thread (of `voxtap run`, `voxtap central attach`).
pub fn spawn(
    o: TunnelOptions,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("hub-tunnel".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(4)
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(o, stop)),
                Err(e) => tracing::error!("hub tunnel runtime: {e}"),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("wss://hub.example:8443").unwrap(),
            (true, "hub.example".into(), 8443)
        );
        assert_eq!(
            parse_url("ws://127.0.0.1:9/x").unwrap(),
            (false, "127.0.0.1".into(), 9)
        );
        assert_eq!(parse_url("wss://[::1]:7").unwrap(), (true, "::1".into(), 7));
        assert_eq!(parse_url("wss://h").unwrap().2, 443);
        assert!(parse_url("https://h").is_err());
    }

    #[test]
    fn files_stay_in_their_folder() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        std::fs::create_dir_all(data.join("c1")).unwrap();
        std::fs::write(data.join("c1/call.pcap"), b"pcap").unwrap();
        std::fs::write(data.join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(data.join("secret"), data.join("c1/evil.wav")).unwrap();
        assert!(matches!(
            resolve(data, "c1", "call.pcap"),
            Ok(Body::File(_))
        ));
        assert!(matches!(
            resolve(data, "c1", "evil.wav"),
            Err((Frame::Refused, _))
        ));
        assert!(matches!(
            resolve(data, "../x", "call.pcap"),
            Err((Frame::Refused, _))
        ));
        assert!(matches!(
            resolve(data, "c1", "nope"),
            Err((Frame::NotFound, _))
        ));
        assert!(!plain_name("../call.pcap"));
        assert!(!plain_name(".remote.json"));
        assert!(plain_name("call.pcap"));
    }
}
