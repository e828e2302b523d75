//! Downloads of a call's files: its PCAP, decrypted PCAP, sip.txt, JSON
//! report, a zip of everything, and any file of its folder by name. A file
//! uploaded to S3 and deleted locally is fetched from S3 through the
//! folder's manifest, so downloads work the same for both.

use std::io::{Seek, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use voxtap_engine::index::{CallDetail, CallRow};

use crate::files::{self, FileError};
use crate::handlers::{AppError, audit, detail, report};
use crate::{Identity, Shared};

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

/// `GET /calls/{id}/download/{kind}`.
pub async fn download(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((id, kind)): Path<(i64, String)>,
) -> R<Response> {
    let d = detail(&st, id).await?;
    let folder = folder_of(&d.call)?.to_string();
    let one_file = FOLDER_FILES.iter().find(|(k, _, _)| *k == kind);
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
        ("zip", None) => send_zip(&st, &d, &folder).await?,
        _ => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "unknown download (pcap, decrypted, sip, report, zip)",
            ));
        }
    };
    st.metrics.downloads.fetch_add(1, Ordering::Relaxed);
    audit(&st, &ident, "download", Some(id), &kind).await;
    Ok(resp)
}

async fn send_zip(st: &Shared, d: &CallDetail, folder: &str) -> R<Response> {
    let report = serde_json::to_vec_pretty(&report(st, d)).unwrap_or_default();
    let data = st.data.clone();
    let f = folder.to_string();
    let file = tokio::task::spawn_blocking(move || build_zip(&data, &f, &report))
        .await
        .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "zip failed"))??;
    let len = file.metadata().map(|m| m.len()).ok();
    Ok(attachment(
        streamed(tokio::fs::File::from_std(file)),
        "application/zip",
        len,
        &attachment_name(&d.call, "bundle.zip"),
    ))
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
/// wrote them, the decrypted PCAP and WAVs. Built in an unnamed temporary
/// file so a long call's PCAP is not held in memory.
fn build_zip(data: &FsPath, folder: &str, report: &[u8]) -> R<std::fs::File> {
    let fail = |e: &dyn std::fmt::Display| {
        tracing::error!("building zip for {folder}: {e}");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "building the zip failed")
    };
    let tmp = tempfile::tempfile().map_err(|e| fail(&e))?;
    let mut z = zip::ZipWriter::new(tmp);
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
            let mut src = std::fs::File::open(&p).map_err(|e| fail(&e))?;
            z.start_file(name.as_str(), opts).map_err(|e| fail(&e))?;
            std::io::copy(&mut src, &mut z).map_err(|e| fail(&e))?;
        } else if let Ok(m) = files::remote(data, folder, &name) {
            // Held in S3 only (this runs on a blocking thread).
            let bytes = m.fetch(&name).map_err(|e| fail(&e))?;
            z.start_file(name.as_str(), opts).map_err(|e| fail(&e))?;
            z.write_all(&bytes).map_err(|e| fail(&e))?;
        }
    }
    z.start_file("report.json", opts).map_err(|e| fail(&e))?;
    z.write_all(report).map_err(|e| fail(&e))?;
    let mut f = z.finish().map_err(|e| fail(&e))?;
    f.rewind().map_err(|e| fail(&e))?;
    Ok(f)
}

/// `GET /calls/{id}/files/{name}`: any file of the call's folder by name
/// (the WAVs the media work writes).
pub async fn call_file(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((id, name)): Path<(i64, String)>,
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
    if ct == "audio/wav" {
        // inline, so the <audio> element can play it.
        resp.headers_mut().remove(header::CONTENT_DISPOSITION);
    }
    st.metrics.downloads.fetch_add(1, Ordering::Relaxed);
    audit(&st, &ident, "download", Some(id), &name).await;
    Ok(resp)
}
