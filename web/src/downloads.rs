//! Downloads of a call's files: its PCAP, decrypted PCAP, sip.txt, JSON
//! report, a zip of everything, and any file of its folder by name. A file
//! uploaded to S3 and deleted locally is fetched from S3 through the
//! folder's manifest, so downloads work the same for both.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;
use voxtap_engine::index::{CallDetail, CallRow};

use crate::audit::action;
use crate::files::{self, FileError};
use crate::handlers::{AppError, audit, detail, report};
use crate::{Identity, Role, Shared};

type R<T> = Result<T, AppError>;

const PCAP: &str = "application/vnd.tcpdump.pcap";

/// The downloads that are one file of the call's folder: (kind, file
/// name, content type).
const FOLDER_FILES: [(&str, &str, &str); 3] = [
    ("pcap", "call.pcap", PCAP),
    ("decrypted", files::DECRYPTED_PCAP, PCAP),
    ("sip", "sip.txt", "text/plain; charset=utf-8"),
];

fn folder_of(c: &CallRow) -> R<&str> {
    c.folder.as_deref().ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "this call was indexed without its files (CSV-only import)",
        )
    })
}

fn attachment_name(c: &CallRow, file: &str) -> String {
    let base: String = c
        .folder
        .as_deref()
        .and_then(|f| f.rsplit('/').next())
        .unwrap_or("call")
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | '@'))
        .collect();
    format!("{base}-{file}")
}

/// `body` as a download named `name`.
pub(crate) fn attachment(body: Body, content_type: &str, len: Option<u64>, name: &str) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// A file streamed from the disk rather than read into memory.
fn streamed(f: tokio::fs::File) -> Body {
    Body::from_stream(tokio_util::io::ReaderStream::new(f))
}

async fn send_file(path: PathBuf, content_type: &str, name: &str) -> R<Response> {
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|_| AppError::new(StatusCode::NOT_FOUND, "no such file"))?;
    let len = f.metadata().await.map(|m| m.len()).ok();
    Ok(attachment(streamed(f), content_type, len, name))
}

/// A call folder's file from the disk or, once uploaded to S3 and deleted
/// locally, from S3.
async fn send_call_file(
    data: &FsPath,
    folder: &str,
    name: &str,
    content_type: &str,
    attachment_name: &str,
) -> R<Response> {
    match files::in_folder(data, folder, name) {
        Ok(p) => send_file(p, content_type, attachment_name).await,
        Err(FileError::Missing) => {
            let m = files::remote(data, folder, name)?;
            let (n, what) = (name.to_string(), format!("{folder}/{name}"));
            let bytes = tokio::task::spawn_blocking(move || m.fetch(&n))
                .await
                .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "fetch failed"))?
                .map_err(|e| {
                    tracing::error!("fetching {what} from S3: {e}");
                    AppError::new(
                        StatusCode::BAD_GATEWAY,
                        "this file is held in S3, which could not be read",
                    )
                })?;
            Ok(attachment(
                Body::from(bytes),
                content_type,
                None,
                attachment_name,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The role a download kind needs: signalling for a viewer, anything
/// with media (RTP in the PCAPs, WAVs in the zip) for a listener.
fn role_for(kind: &str) -> Role {
    match kind {
        "sip" | "report" => Role::Viewer,
        _ => Role::Listener,
    }
}

/// `GET /calls/{id}/download/{kind}`.
pub async fn download(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((id, kind)): Path<(i64, String)>,
) -> R<Response> {
    let need = role_for(&kind);
    if ident.role < need {
        return Ok(crate::gate::forbidden(ident.role, need, false));
    }
    let d = detail(&st, id).await?;
    let folder = folder_of(&d.call)?.to_string();
    let one_file = FOLDER_FILES.iter().find(|(k, _, _)| *k == kind);
    let act = if kind == "decrypted" {
        action::DECRYPTED
    } else {
        action::DOWNLOAD
    };
    let resp = match (kind.as_str(), one_file) {
        (_, Some((_, file, ct))) => {
            let name = attachment_name(&d.call, file);
            match &st.hub {
                Some(hub) => {
                    let (body, len) = hub.file_body(&ident, &d.call, file).await?;
                    attachment(body, ct, len, &name)
                }
                None => send_call_file(&st.data, &folder, file, ct, &name).await?,
            }
        }
        ("report", None) => {
            let body = serde_json::to_vec_pretty(&report(&st, &d)).unwrap_or_default();
            let name = attachment_name(&d.call, "report.json");
            attachment(Body::from(body), "application/json", None, &name)
        }
        ("zip", None) if st.hub.is_some() => hub_zip(&st, &ident, &d).await?,
        ("zip", None) => send_zip(&st, d, folder),
        _ => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "unknown download (pcap, decrypted, sip, report, zip)",
            ));
        }
    };
    // Recorded before a byte leaves: a refusal here drops the response.
    audit(&st, &ident, act, Some(id), &kind).await?;
    st.metrics.downloads.fetch_add(1, Ordering::Relaxed);
    Ok(resp)
}

/// The bundle, built by a blocking thread as it is sent: the first bytes
/// leave at once, and memory holds a few chunks rather than the zip (a
/// call with 60 MB of SIP made a 19 s wait and a copy of it all before).
/// A failure part way ends the body with an error, so the client sees a
/// broken download rather than a short zip that looks whole.
fn send_zip(st: &Shared, d: CallDetail, folder: String) -> Response {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let name = attachment_name(&d.call, "bundle.zip");
    let st = st.clone();
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(ZIP_CHUNK),
        };
        if let Err(e) = write_zip(&st, &d, &folder, out) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                tracing::debug!("zip of {folder}: the client went away");
            } else {
                tracing::error!("building the zip of {folder}: {e}");
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        ChannelReader {
            rx,
            cur: Bytes::new(),
        },
        ZIP_CHUNK,
    ));
    attachment(body, "application/zip", None, &name)
}

const ZIP_CHUNK: usize = 64 * 1024;

/// The zip's bytes into the response's channel, in chunks (blocking: runs
/// on a blocking thread).
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(ZIP_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= ZIP_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The channel's chunks as a reader for the response body.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl tokio::io::AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.cur.is_empty() {
                let n = buf.remaining().min(self.cur.len());
                buf.put_slice(&self.cur.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(Ok(chunk)) => self.cur = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// The hub's bundle: call.pcap and sip.txt fetched like the single
/// downloads, and the report.
async fn hub_zip(st: &Shared, ident: &Identity, d: &CallDetail) -> R<Response> {
    let Some(hub) = &st.hub else {
        return Err(AppError::new(StatusCode::NOT_FOUND, "not a hub"));
    };
    let mut files = Vec::new();
    for name in ["call.pcap", "sip.txt"] {
        files.push((name, hub.file_bytes(ident, &d.call, name).await?));
    }
    let report = serde_json::to_vec_pretty(&report(st, d)).unwrap_or_default();
    files.push(("report.json", report));
    let zipped = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, zip::result::ZipError> {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        for (name, bytes) in files {
            z.start_file(name, opts)?;
            z.write_all(&bytes)?;
        }
        Ok(z.finish()?.into_inner())
    })
    .await
    .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "zip failed"))?
    .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let len = zipped.len() as u64;
    Ok(attachment(
        Body::from(zipped),
        "application/zip",
        Some(len),
        &attachment_name(&d.call, "bundle.zip"),
    ))
}

/// The bundle: call.pcap, sip.txt, report.json and, when the media work
/// wrote them, the decrypted PCAP and WAVs, streamed into `out` (entries
/// carry data descriptors, as a stream cannot seek back).
fn write_zip(st: &Shared, d: &CallDetail, folder: &str, out: ChannelWriter) -> std::io::Result<()> {
    let data = st.data.as_path();
    let zerr = |e: zip::result::ZipError| std::io::Error::other(e.to_string());
    let mut z = zip::ZipWriter::new_stream(out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let extras = files::extras(data, folder);
    let mut names = vec!["call.pcap".to_string(), "sip.txt".to_string()];
    if extras.decrypted_pcap {
        names.push(files::DECRYPTED_PCAP.to_string());
    }
    names.extend(extras.wavs);
    for name in names {
        if let Ok(p) = files::in_folder(data, folder, &name) {
            let mut src = std::fs::File::open(&p)?;
            z.start_file(name.as_str(), opts).map_err(zerr)?;
            std::io::copy(&mut src, &mut z)?;
        } else if let Ok(m) = files::remote(data, folder, &name) {
            // Held in S3 only.
            let bytes = m
                .fetch(&name)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            z.start_file(name.as_str(), opts).map_err(zerr)?;
            z.write_all(&bytes)?;
        }
    }
    z.start_file("report.json", opts).map_err(zerr)?;
    // serde_json writes token by token: batch them for the compressor.
    let mut buffered = std::io::BufWriter::with_capacity(ZIP_CHUNK, &mut z);
    serde_json::to_writer_pretty(&mut buffered, &report(st, d))?;
    buffered.flush()?;
    drop(buffered);
    z.finish().map_err(zerr)?.into_inner().flush()
}

#[derive(Deserialize)]
pub struct FileQuery {
    /// Set by the page's download buttons: an attachment, recorded as a
    /// download rather than as audio sent to the player.
    download: Option<String>,
}

/// `GET /calls/{id}/files/{name}`: any file of the call's folder by name
/// (the WAVs the media work writes).
pub async fn call_file(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((id, name)): Path<(i64, String)>,
    Query(q): Query<FileQuery>,
) -> R<Response> {
    // Refuse bad names before touching the index or the disk.
    files::check_name(&name)?;
    let d = detail(&st, id).await?;
    let folder = folder_of(&d.call)?;
    let ct = if name.to_ascii_lowercase().ends_with(".wav") {
        "audio/wav"
    } else if name.ends_with(".pcap") {
        PCAP
    } else {
        "application/octet-stream"
    };
    let attach = attachment_name(&d.call, &name);
    let mut resp = match &st.hub {
        Some(hub) => {
            let (body, len) = hub.file_body(&ident, &d.call, &name).await?;
            attachment(body, ct, len, &attach)
        }
        None => send_call_file(&st.data, folder, &name, ct, &attach).await?,
    };
    let for_player = ct == "audio/wav" && q.download.is_none();
    if for_player {
        // inline, so the <audio> element can play it.
        resp.headers_mut().remove(header::CONTENT_DISPOSITION);
    }
    // Every file holding decrypted media is recorded as such.
    let decrypted = [
        files::DECRYPTED_PCAP,
        "media-decrypted.pcap",
        "sip-plus-media-decrypted.pcap",
    ];
    let act = if decrypted.contains(&name.as_str()) {
        action::DECRYPTED
    } else if for_player {
        action::AUDIO
    } else {
        action::DOWNLOAD
    };
    audit(&st, &ident, act, Some(id), &name).await?;
    st.metrics.downloads.fetch_add(1, Ordering::Relaxed);
    Ok(resp)
}

/// rtp-capture-tool's output names, the call-folder file each one is, and
/// the file served instead for a call without SRTP (nothing to decrypt:
/// rtp-capture-tool's `-no-decrypt-need` copy).
pub const CORRELATED: [(&str, &str, Option<&str>); 3] = [
    ("media_raw.pcap", "media.pcap", None),
    (
        "media_decrypted.pcap",
        "media-decrypted.pcap",
        Some("media.pcap"),
    ),
    (
        "SIP_plus_media_decrypted.pcap",
        files::DECRYPTED_PCAP,
        Some("call.pcap"),
    ),
];

/// Whether the call folder has `name`, on the disk or in S3.
fn has_file(data: &FsPath, folder: &str, name: &str) -> bool {
    files::in_folder(data, folder, name).is_ok() || files::remote(data, folder, name).is_ok()
}

/// `GET /calls/{id}/correlated/{name}`: a call's file under
/// rtp-capture-tool's name (see [`CORRELATED`]), audited like the other
/// downloads (decrypted media as `decrypted`).
pub async fn correlated(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((id, name)): Path<(i64, String)>,
) -> R<Response> {
    let Some(&(_, first, fallback)) = CORRELATED.iter().find(|c| c.0 == name) else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "unknown file (media_raw.pcap, media_decrypted.pcap, SIP_plus_media_decrypted.pcap)",
        ));
    };
    if st.hub.is_some() {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "on a hub, download the call's files from its page",
        ));
    }
    let d = detail(&st, id).await?;
    let folder = folder_of(&d.call)?.to_string();
    let file = if has_file(&st.data, &folder, first) {
        first
    } else {
        fallback
            .filter(|f| has_file(&st.data, &folder, f))
            .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "this call has no media"))?
    };
    let resp = send_call_file(
        &st.data,
        &folder,
        file,
        PCAP,
        &attachment_name(&d.call, &name),
    )
    .await?;
    let act = if name == "media_raw.pcap" {
        action::DOWNLOAD
    } else {
        action::DECRYPTED
    };
    // Recorded before a byte leaves: a refusal here drops the response.
    audit(&st, &ident, act, Some(id), &format!("{name} ({file})")).await?;
    st.metrics.downloads.fetch_add(1, Ordering::Relaxed);
    Ok(resp)
}
