//! Import of uploaded captures: the upload form, the upload itself (each
//! file checked to be a capture while it is written), and the background
//! job's page and JSON.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::multipart::Field;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::audit::action;
use crate::csrf::{CheckedMultipart, UploadError};
use crate::handlers::{AppError, audit};
use crate::jobs::Job;
use crate::{Identity, Shared, pages};

pub async fn import_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
) -> Html<String> {
    Html(pages::import(&ident, &st.jobs.list(), None))
}

/// pcap (both byte orders, µs and ns) and pcapng magic numbers.
pub fn is_capture_magic(b: &[u8]) -> bool {
    matches!(
        b.get(..4),
        Some(
            [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xc3, 0xd4]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    )
}

pub(crate) fn upload_name(n: usize, name: Option<&str>) -> String {
    let clean: String = name
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(80)
        .collect();
    let clean = clean.trim_start_matches('.');
    format!(
        "{n:03}-{}",
        if clean.is_empty() {
            "upload.pcap"
        } else {
            clean
        }
    )
}

/// Why an upload was refused: the status and the message for the user.
type Refusal = (StatusCode, String);

/// Why [`receive`] stopped.
enum Received {
    Form(UploadError),
    Refused(Refusal),
}

/// `POST /import`: store the uploaded files under `imports/<job>.upload/`
/// and start a job importing them. A page answers a browser form
/// (`Accept: text/html`), JSON any other client.
pub async fn import_post(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    form: CheckedMultipart,
) -> Response {
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if st.hub.is_some() {
        return (
            StatusCode::BAD_REQUEST,
            "this server is a hub: it searches the central index; import on a sensor with \
             `voxtap import --central URL --sensor-id ID`",
        )
            .into_response();
    }
    let job_id = st.jobs.next_id();
    let upload_dir = st.data.join("imports").join(format!("{job_id}.upload"));
    let received = receive(form, &upload_dir).await;
    let refusal = match received {
        Ok(saved) if saved.is_empty() => (
            StatusCode::BAD_REQUEST,
            "no file uploaded: choose one or more .pcap/.pcapng files".to_string(),
        ),
        Ok(saved) => {
            let files: Vec<&str> = saved.iter().map(|(_, n)| n.as_str()).collect();
            let detail = format!("job {job_id}: {}", files.join(", "));
            if let Err(e) = audit(&st, &ident, action::IMPORT, None, &detail).await {
                let _ = std::fs::remove_dir_all(&upload_dir);
                return e.into_response();
            }
            start_job(&st, &ident, &job_id, saved, upload_dir);
            return accepted(html, &job_id);
        }
        Err(Received::Form(UploadError::Refused(e))) => {
            let _ = std::fs::remove_dir_all(&upload_dir);
            return e.into_response();
        }
        Err(Received::Form(UploadError::Multipart(e))) => {
            (StatusCode::BAD_REQUEST, format!("bad upload: {e}"))
        }
        Err(Received::Refused(r)) => r,
    };
    let _ = std::fs::remove_dir_all(&upload_dir);
    let (status, msg) = refusal;
    tracing::warn!(user = %ident.user, "import refused: {msg}");
    if html {
        let page = pages::import(&ident, &st.jobs.list(), Some(&msg));
        (status, Html(page)).into_response()
    } else {
        (status, Json(serde_json::json!({"error": msg}))).into_response()
    }
}

/// Longest form field other than a file that an upload may carry: the
/// form has none, and a big one would only cost time to read past.
const MAX_OTHER_FIELD: usize = 4096;

/// Reads past a field that is not a file, refusing it once it is longer
/// than [`MAX_OTHER_FIELD`].
async fn skip_field(mut field: Field<'_>) -> Result<(), Received> {
    let name = field
        .name()
        .unwrap_or("")
        .chars()
        .take(40)
        .collect::<String>();
    let mut n = 0usize;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| Received::Refused((StatusCode::BAD_REQUEST, format!("bad upload: {e}"))))?
    {
        n += chunk.len();
        if n > MAX_OTHER_FIELD {
            return Err(Received::Refused((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("form field '{name}' is longer than {MAX_OTHER_FIELD} bytes"),
            )));
        }
    }
    Ok(())
}

/// Writes each file of the form into `dir`: (path, name as uploaded).
async fn receive(
    mut form: CheckedMultipart,
    dir: &FsPath,
) -> Result<Vec<(PathBuf, String)>, Received> {
    let mut saved: Vec<(PathBuf, String)> = Vec::new();
    while let Some(field) = form.next_field().await.map_err(Received::Form)? {
        if field.name() != Some("files") {
            skip_field(field).await?;
            continue;
        }
        let shown = field.file_name().unwrap_or("upload").to_string();
        if shown.is_empty() {
            continue; // the form's empty file input
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            Received::Refused((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot create the upload folder: {e}"),
            ))
        })?;
        let path = dir.join(upload_name(saved.len(), Some(&shown)));
        save(field, &path, &shown)
            .await
            .map_err(Received::Refused)?;
        saved.push((path, shown));
    }
    Ok(saved)
}

/// Writes one uploaded file to `path`, refusing it as soon as its first
/// bytes show it is not a capture.
async fn save(mut field: Field<'_>, path: &FsPath, shown: &str) -> Result<(), Refusal> {
    let store_failed = |e: std::io::Error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot store the upload: {e}"),
        )
    };
    let mut file = std::fs::File::create(path).map_err(store_failed)?;
    let mut head: Vec<u8> = Vec::new();
    let mut checked = false;
    while let Some(chunk) = field.chunk().await.map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("upload of {shown} broke off: {e}"),
        )
    })? {
        if !checked {
            head.extend_from_slice(&chunk[..chunk.len().min(4)]);
            if head.len() >= 4 {
                checked = true;
                if !is_capture_magic(&head) {
                    return Err((StatusCode::BAD_REQUEST, not_a_capture(shown, &head[..4])));
                }
            }
        }
        file.write_all(&chunk).map_err(store_failed)?;
    }
    if !checked {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("{shown} is too short to be a pcap or pcapng capture"),
        ));
    }
    Ok(())
}

pub(crate) fn not_a_capture(shown: &str, head: &[u8]) -> String {
    format!(
        "{shown} is not a pcap or pcapng capture (it starts with {}); upload .pcap or .pcapng files",
        head.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Registers the job and queues it to run in the background.
fn start_job(
    st: &Shared,
    ident: &Identity,
    job_id: &str,
    saved: Vec<(PathBuf, String)>,
    upload_dir: PathBuf,
) {
    let total: u64 = saved
        .iter()
        .filter_map(|(p, _)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let job = Job::new(
        job_id.to_string(),
        ident.user.clone(),
        saved.iter().map(|(_, n)| n.clone()).collect(),
        total,
    );
    st.jobs.insert(job.clone());
    st.metrics.imports.fetch_add(1, Ordering::Relaxed);
    crate::jobs::spawn(
        st.clone(),
        job,
        saved.into_iter().map(|(p, _)| p).collect(),
        Some(upload_dir),
    );
}

fn accepted(html: bool, job_id: &str) -> Response {
    if html {
        Redirect::to(&format!("/import/{job_id}")).into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"job": job_id, "status": format!("/api/import/{job_id}")})),
        )
            .into_response()
    }
}

pub async fn job_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path(job): Path<String>,
) -> Result<Html<String>, AppError> {
    let j = st
        .jobs
        .get(&job)
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such import job"))?;
    Ok(Html(pages::job(&ident, &j)))
}

pub async fn api_job(
    State(st): State<Shared>,
    Path(job): Path<String>,
) -> Result<Response, AppError> {
    let j = st
        .jobs
        .get(&job)
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such import job").json())?;
    Ok(Json(j).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_flat() {
        assert_eq!(upload_name(0, Some("../../etc/x.pcap")), "000-x.pcap");
        assert_eq!(upload_name(1, Some("..")), "001-upload.pcap");
        assert_eq!(upload_name(2, Some("a b.pcapng")), "002-ab.pcapng");
    }
}
