//! A call's file on the hub: from S3 when the sensor shipped its object
//! (`voxtap.call_files`), which works with the sensor down; else from the
//! sensor through its tunnel, with a request signed for the user, the path
//! and an expiry. A sensor that is not connected makes only these files
//! unavailable ("sensor offline"), never the search.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use voxtap_engine::index::CallRow;
use voxtap_sensor::central::protocol::{FileRequest, Frame};
use voxtap_sensor::upload::manifest::{Manifest, RemoteEntry};

use super::tunnel::Answer;
use super::{Hub, unavailable};
use crate::handlers::AppError;
use crate::{Identity, files};

/// How long the first frame of an answer may take.
const FIRST_FRAME: Duration = Duration::from_secs(30);

fn offline(sensor: &str) -> AppError {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("sensor offline: {sensor} holds this file and is not connected to the hub"),
    )
}

impl Hub {
    /// The S3 object of `name` of call `c`, when the sensor shipped one.
    async fn s3_object(&self, c: &CallRow, name: &str) -> Result<Option<Manifest>, AppError> {
        let db = self.client().await?;
        let start = std::time::UNIX_EPOCH + Duration::from_nanos(c.start_ns);
        let sensor = c.sensor.clone().unwrap_or_default();
        let row = db
            .query_opt(
                "SELECT endpoint, region, bucket, path_style, key, bytes, sha256 FROM voxtap.call_files \
                 WHERE call_id = $1 AND sensor = (SELECT id FROM voxtap.sensors WHERE name = $2) \
                 AND call_start = $3 AND name = $4",
                &[&c.call_id, &sensor, &start, &name],
            )
            .await
            .map_err(unavailable)?;
        Ok(row.map(|r| Manifest {
            endpoint: r.get(0),
            region: r.get(1),
            bucket: r.get(2),
            path_style: r.get(3),
            files: [(
                name.to_string(),
                RemoteEntry {
                    key: r.get(4),
                    bytes: r.get::<_, i64>(5).max(0) as u64,
                    sha256: r.get(6),
                },
            )]
            .into(),
        }))
    }

    /// Asks the call's sensor for `name` through its tunnel.
    async fn ask_sensor(
        &self,
        ident: &Identity,
        c: &CallRow,
        name: &str,
    ) -> Result<Answer, AppError> {
        let sensor = c.sensor.as_deref().unwrap_or("");
        let secret = self.secret(sensor).ok_or_else(|| offline(sensor))?;
        let expires = voxtap_sensor::status::now_unix() + self.request_ttl.as_secs();
        let req = FileRequest::new_signed(
            secret,
            self.tunnels.next_id(),
            &ident.user,
            (&c.call_id, c.start_ns),
            name,
            expires,
        );
        self.tunnels
            .request(sensor, &req)
            .await
            .ok_or_else(|| offline(sensor))
    }

    /// `name` of call `c` as a response body (streamed from the tunnel).
    pub async fn file_body(
        &self,
        ident: &Identity,
        c: &CallRow,
        name: &str,
    ) -> Result<(Body, Option<u64>), AppError> {
        files::check_name(name)?;
        let sensor = c.sensor.clone().unwrap_or_default();
        let mut s3_failed = false;
        if let Some(m) = self.s3_object(c, name).await? {
            let n = name.to_string();
            let len = m.files.get(name).map(|e| e.bytes);
            match tokio::task::spawn_blocking(move || m.fetch(&n)).await {
                Ok(Ok(bytes)) => return Ok((Body::from(bytes), len)),
                Ok(Err(e)) => tracing::warn!("{sensor}: {name} from S3: {e}"),
                Err(e) => tracing::warn!("{sensor}: {name} from S3: {e}"),
            }
            s3_failed = true;
        }
        let answer = match self.ask_sensor(ident, c, name).await {
            Ok(a) => a,
            Err(_) if s3_failed => {
                return Err(AppError::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "this file is held in S3, which could not be read, and sensor {sensor} is offline"
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        streamed(answer, &sensor).await.map(|b| (b, None))
    }

    /// The whole file (for the zip bundle).
    pub async fn file_bytes(
        &self,
        ident: &Identity,
        c: &CallRow,
        name: &str,
    ) -> Result<Vec<u8>, AppError> {
        let (body, _) = self.file_body(ident, c, name).await?;
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| AppError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
        Ok(bytes.to_vec())
    }
}

/// The answer's first frame decides the status; the data frames that
/// follow are streamed. An error after the first byte aborts the body.
async fn streamed(mut a: Answer, sensor: &str) -> Result<Body, AppError> {
    let first = tokio::time::timeout(FIRST_FRAME, a.recv())
        .await
        .map_err(|_| {
            AppError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("sensor {sensor} did not answer"),
            )
        })?;
    let msg = |p: &[u8]| format!("sensor {sensor}: {}", String::from_utf8_lossy(p));
    let first = match first {
        None => return Err(offline(sensor)),
        Some((Frame::NotFound, p)) => return Err(AppError::new(StatusCode::NOT_FOUND, msg(&p))),
        Some((Frame::Refused, p)) => return Err(AppError::new(StatusCode::FORBIDDEN, msg(&p))),
        Some((Frame::Failed, p)) => return Err(AppError::new(StatusCode::BAD_GATEWAY, msg(&p))),
        Some((Frame::End, _)) => return Ok(Body::empty()),
        Some((Frame::Data, p)) => p,
    };
    let stream =
        futures_util::stream::unfold((Some(first), a, false), |(first, mut a, done)| async move {
            if done {
                return None;
            }
            if let Some(f) = first {
                return Some((Ok(Bytes::from(f)), (None, a, false)));
            }
            match a.recv().await {
                Some((Frame::Data, p)) => Some((Ok(Bytes::from(p)), (None, a, false))),
                Some((Frame::End, _)) => None,
                Some((_, p)) => Some((
                    Err(std::io::Error::other(
                        String::from_utf8_lossy(&p).into_owned(),
                    )),
                    (None, a, true),
                )),
                None => Some((
                    Err(std::io::Error::other("the sensor's tunnel closed")),
                    (None, a, true),
                )),
            }
        });
    Ok(Body::from_stream(stream))
}

/// A response for a file fetched by the hub.
pub fn response(
    body: Body,
    len: Option<u64>,
    content_type: &str,
    attachment_name: &str,
) -> Response {
    crate::downloads::attachment(body, content_type, len, attachment_name)
}
