//! The S3 client: aws-sdk-s3 behind a blocking API. It owns a
//! current-thread tokio runtime, so the uploader thread, `voxtap extract` and
//! the web server's blocking tasks call it without an async context of their
//! own.
//!
//! Every PUT and UploadPart carries `x-amz-checksum-sha256`: S3 (and s3s)
//! recompute it over the bytes received and refuse the request on a
//! mismatch, so a 200 confirms the bytes. Credentials come from the standard
//! AWS chain (environment, profile files, web identity, ECS/EC2 metadata).

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::UploadConfig;

/// One S3 request failed. `unreachable`: no answer (connection refused,
/// DNS, timeout): the file waits locally without spending an attempt.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct S3Error {
    pub unreachable: bool,
    /// S3's error code when it answered (`NoSuchUpload`, `BadDigest`, ...).
    pub code: Option<String>,
    pub message: String,
}

impl S3Error {
    fn local(message: String) -> Self {
        S3Error {
            unreachable: false,
            code: None,
            message,
        }
    }
}

fn s3err<E, R>(what: &str, e: SdkError<E, R>) -> S3Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let unreachable = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
    let code = match &e {
        SdkError::ServiceError(s) => s.err().code().map(str::to_string),
        _ => None,
    };
    S3Error {
        unreachable,
        code,
        message: format!("{what}: {}", DisplayErrorContext(&e)),
    }
}

/// SHA-256 of `data`, base64 (the form of `x-amz-checksum-sha256`).
pub(crate) fn sha256_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

/// Ranged GETs in flight at once: S3 answers each in tens of ms, so a call
/// spread over many small ranges is fetched in parallel, not one by one.
pub(crate) const PARALLEL_GETS: usize = 16;

async fn get_range(
    client: &Client,
    bucket: &str,
    key: &str,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, S3Error> {
    if end <= start {
        return Ok(Vec::new());
    }
    let want = (end - start) as usize;
    let r = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes={start}-{}", end - 1))
        .send()
        .await
        .map_err(|e| s3err("GetObject", e))?;
    let data = r
        .body
        .collect()
        .await
        .map(|b| b.into_bytes().to_vec())
        .map_err(|e| S3Error {
            unreachable: true,
            code: None,
            message: format!("GetObject {key}: reading the body: {e}"),
        })?;
    if data.len() != want {
        return Err(S3Error::local(format!(
            "GetObject {key} bytes {start}-{}: got {} bytes, asked for {want}",
            end - 1,
            data.len()
        )));
    }
    Ok(data)
}

pub struct S3 {
    rt: tokio::runtime::Runtime,
    client: Client,
    bucket: String,
}

/// What HEAD says about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// Our `x-amz-meta-sha256` (hex of the whole file).
    pub sha256: Option<String>,
}

impl S3 {
    pub fn new(cfg: &UploadConfig) -> Result<Self, S3Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| S3Error::local(format!("starting the S3 runtime: {e}")))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeout = Duration::from_secs(cfg.request_timeout_seconds.max(1));
        let sdk = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(cfg.region.clone()))
                .http_client(http)
                .load(),
        );
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.path_style)
            // Our own checksums on each request; no trailing CRC32 framing
            // that some S3-compatible servers do not know.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // The uploader retries with its own backoff and attempt count.
            // The uploader retries with its own backoff and attempt count;
            // one quick SDK retry covers a pooled connection that the server
            // closed (e.g. after it restarted).
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(50)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5).min(timeout))
                    .operation_attempt_timeout(timeout)
                    .build(),
            );
        if !cfg.endpoint.is_empty() {
            b = b.endpoint_url(&cfg.endpoint);
        }
        Ok(S3 {
            rt,
            client: Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket (tests, first setup); an existing one is fine.
    pub fn create_bucket(&self) -> Result<(), S3Error> {
        let r = self
            .rt
            .block_on(self.client.create_bucket().bucket(&self.bucket).send());
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = s3err("CreateBucket", e);
                match e.code.as_deref() {
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists") => Ok(()),
                    _ => Err(e),
                }
            }
        }
    }

    /// One PUT of `data`, checksummed; `sha256_hex` of the whole file goes in
    /// the object's metadata.
    pub fn put(&self, key: &str, data: Vec<u8>, sha256_hex: &str) -> Result<(), S3Error> {
        let sum = sha256_b64(&data);
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .checksum_sha256(sum)
                    .metadata("sha256", sha256_hex)
                    .body(ByteStream::from(data))
                    .send(),
            )
            .map_err(|e| s3err("PutObject", e))?;
        Ok(())
    }

    pub fn create_multipart(&self, key: &str, sha256_hex: &str) -> Result<String, S3Error> {
        let r = self
            .rt
            .block_on(
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .metadata("sha256", sha256_hex)
                    .send(),
            )
            .map_err(|e| s3err("CreateMultipartUpload", e))?;
        r.upload_id
            .ok_or_else(|| S3Error::local("CreateMultipartUpload: no upload id".into()))
    }

    /// Sends part `part` (from 1); returns its ETag and SHA-256 (base64).
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: i32,
        data: Vec<u8>,
    ) -> Result<(String, String), S3Error> {
        let sum = sha256_b64(&data);
        let r = self
            .rt
            .block_on(
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(part)
                    .checksum_sha256(&sum)
                    .body(ByteStream::from(data))
                    .send(),
            )
            .map_err(|e| s3err("UploadPart", e))?;
        let etag = r
            .e_tag
            .ok_or_else(|| S3Error::local(format!("UploadPart {part}: no ETag")))?;
        Ok((etag, sum))
    }

    pub fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String, String)],
    ) -> Result<(), S3Error> {
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag, sum)| {
                        CompletedPart::builder()
                            .part_number(*n)
                            .e_tag(etag)
                            .checksum_sha256(sum)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.rt
            .block_on(
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(done)
                    .send(),
            )
            .map_err(|e| s3err("CompleteMultipartUpload", e))?;
        Ok(())
    }

    pub fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        self.rt
            .block_on(
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send(),
            )
            .map_err(|e| s3err("AbortMultipartUpload", e))?;
        Ok(())
    }

    /// Size and our metadata of an object; `None` when it does not exist.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
        let r = self.rt.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        match r {
            Ok(o) => Ok(Some(ObjectInfo {
                size: o.content_length.unwrap_or(0).max(0) as u64,
                sha256: o.metadata.and_then(|m| m.get("sha256").cloned()),
            })),
            Err(SdkError::ServiceError(s)) if s.err().is_not_found() => Ok(None),
            Err(e) => Err(s3err("HeadObject", e)),
        }
    }

    /// Bytes `start..end` (end exclusive) of an object.
    pub fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, S3Error> {
        self.rt
            .block_on(get_range(&self.client, &self.bucket, key, start, end))
    }

    /// Several ranges of one object, [`PARALLEL_GETS`] requests at a time;
    /// the results in the order of `ranges`.
    pub fn get_ranges(&self, key: &str, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>, S3Error> {
        self.rt.block_on(async {
            let mut out = vec![Vec::new(); ranges.len()];
            let mut set = tokio::task::JoinSet::new();
            let mut next = 0;
            loop {
                while set.len() < PARALLEL_GETS && next < ranges.len() {
                    let (client, bucket, key) =
                        (self.client.clone(), self.bucket.clone(), key.to_string());
                    let (i, (start, end)) = (next, ranges[next]);
                    set.spawn(
                        async move { (i, get_range(&client, &bucket, &key, start, end).await) },
                    );
                    next += 1;
                }
                match set.join_next().await {
                    None => break,
                    Some(Ok((i, r))) => out[i] = r?,
                    Some(Err(e)) => return Err(S3Error::local(format!("ranged GET task: {e}"))),
                }
            }
            Ok(out)
        })
    }

    /// A whole object (small call artifacts only).
    pub fn get(&self, key: &str) -> Result<Vec<u8>, S3Error> {
        self.rt.block_on(async {
            let r = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| s3err("GetObject", e))?;
            r.body
                .collect()
                .await
                .map(|b| b.into_bytes().to_vec())
                .map_err(|e| S3Error {
                    unreachable: true,
                    code: None,
                    message: format!("GetObject {key}: reading the body: {e}"),
                })
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.rt
            .block_on(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .map_err(|e| s3err("DeleteObject", e))?;
        Ok(())
    }

    /// Every key under `prefix` (tests, inspection).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = self
                .rt
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.take())
                        .send(),
                )
                .map_err(|e| s3err("ListObjectsV2", e))?;
            for o in r.contents() {
                if let Some(k) = o.key() {
                    out.push((k.to_string(), o.size().unwrap_or(0).max(0) as u64));
                }
            }
            match r.next_continuation_token() {
                Some(t) if r.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }
}
