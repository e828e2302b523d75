//! The CSRF check of every state-changing form, as extractors: a handler
//! that takes a [`CheckedForm`] or a [`CheckedMultipart`] only runs for a
//! request that carries its session's token, in the form's `csrf` field or
//! the `x-csrf-token` header. Bearer-token clients have no token to send:
//! a browser cannot be tricked into sending their `Authorization` header.

use axum::body::Bytes;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{Extension, FromRequest, FromRequestParts, Multipart, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Identity;
use crate::handlers::AppError;

/// The form field that carries the token.
pub const FIELD: &str = "csrf";
/// The header that carries it for scripts.
pub const HEADER: &str = "x-csrf-token";
/// Longest token field read (tokens are 64 hex digits): a longer one is
/// refused as soon as it passes this, never buffered (a 300 MB `csrf`
/// field once took 661 MB of memory).
pub const MAX_FIELD: usize = 256;

/// The answer to a request without the right token: 403, as JSON for a
/// client that asked for JSON.
pub fn refused(json: bool) -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        "missing or wrong CSRF token: reload the page and submit the form again",
    )
    .json_if(json)
}

/// Whether the client asked for JSON (`Accept: application/json`).
pub fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A form's answer: `v` to a client that asked for JSON, else the page
/// the form came from (`back`).
pub fn json_or_back(json: bool, v: serde_json::Value, back: &str) -> Response {
    if json {
        axum::Json(v).into_response()
    } else {
        axum::response::Redirect::to(back).into_response()
    }
}

/// The identity the auth layer put into the request, and the token of the
/// `x-csrf-token` header if there is one.
async fn identity<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(Identity, Option<String>, Request), Response> {
    let (mut parts, body) = req.into_parts();
    let Extension(ident) = Extension::<Identity>::from_request_parts(&mut parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    let header = parts
        .headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    Ok((ident, header, Request::from_parts(parts, body)))
}

/// An `application/x-www-form-urlencoded` body whose token checked out.
/// Repeated keys are kept (one `host` per ticked box).
pub struct CheckedForm {
    pairs: Vec<(String, String)>,
}

impl CheckedForm {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for CheckedForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let json = accepts_json(req.headers());
        let (ident, header, req) = identity(req, state).await?;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = CheckedForm {
            pairs: form_pairs(&body),
        };
        // The field if there is one, else the header.
        if ident.csrf_ok(form.get(FIELD).or(header.as_deref())) {
            Ok(form)
        } else {
            Err(refused(json).into_response())
        }
    }
}

/// A multipart upload whose fields are handed out only once the token has
/// come (in the header, or in a `csrf` field before them): nothing of a
/// forged request reaches the handler, so nothing of it is written to disk.
pub struct CheckedMultipart {
    inner: Multipart,
    ident: Identity,
    ok: bool,
    json: bool,
}

/// Why [`CheckedMultipart::next_field`] gave no field.
pub enum UploadError {
    /// A field before the token, or the end of a form without it.
    Refused(AppError),
    Multipart(MultipartError),
}

impl CheckedMultipart {
    /// The next field, `None` at the end. The token's own field comes back
    /// read to its end.
    pub async fn next_field(&mut self) -> Result<Option<Field<'_>>, UploadError> {
        let Some(mut field) = self
            .inner
            .next_field()
            .await
            .map_err(UploadError::Multipart)?
        else {
            return if self.ok {
                Ok(None)
            } else {
                Err(UploadError::Refused(refused(self.json)))
            };
        };
        if field.name() == Some(FIELD) {
            let mut token = Vec::new();
            while let Ok(Some(chunk)) = field.chunk().await {
                if token.len() + chunk.len() > MAX_FIELD {
                    return Err(UploadError::Refused(
                        AppError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("the {FIELD} field is longer than {MAX_FIELD} bytes"),
                        )
                        .json_if(self.json),
                    ));
                }
                token.extend_from_slice(&chunk);
            }
            let token = String::from_utf8_lossy(&token);
            self.ok = self.ok || self.ident.csrf_ok(Some(&token));
        } else if !self.ok {
            return Err(UploadError::Refused(refused(self.json)));
        }
        Ok(Some(field))
    }
}

impl<S: Send + Sync> FromRequest<S> for CheckedMultipart {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let json = accepts_json(req.headers());
        let (ident, header, req) = identity(req, state).await?;
        let ok = ident.csrf_ok(header.as_deref());
        let inner = Multipart::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(CheckedMultipart {
            inner,
            ident,
            ok,
            json,
        })
    }
}

/// `application/x-www-form-urlencoded` pairs, keeping repeated keys.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = b
                        .get(i + 1..i + 3)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn session() -> Identity {
        Identity {
            user: "alice".into(),
            csrf: Some("t".repeat(64)),
            remote: "-".into(),
            role: crate::Role::Operator,
            hub: false,
        }
    }

    fn bearer() -> Identity {
        Identity {
            csrf: None,
            ..session()
        }
    }

    fn request(ident: Identity, content_type: &str, header: Option<&str>, body: String) -> Request {
        let mut b = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, content_type);
        if let Some(t) = header {
            b = b.header(HEADER, t);
        }
        let mut req = b.body(Body::from(body)).unwrap();
        req.extensions_mut().insert(ident);
        req
    }

    async fn form(ident: Identity, header: Option<&str>, body: &str) -> Result<CheckedForm, u16> {
        let req = request(
            ident,
            "application/x-www-form-urlencoded",
            header,
            body.into(),
        );
        CheckedForm::from_request(req, &())
            .await
            .map_err(|r| r.status().as_u16())
    }

    #[tokio::test]
    async fn form_token_from_the_field_or_else_the_header() {
        let good = format!("csrf={}&host=a&host=b", "t".repeat(64));
        let f = form(session(), None, &good).await.ok().unwrap();
        assert_eq!(f.all("host").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(f.get("host"), Some("a"));
        assert_eq!(form(session(), None, "host=a").await.err(), Some(403));
        assert_eq!(form(session(), None, "csrf=0").await.err(), Some(403));
        let t = "t".repeat(64);
        assert!(form(session(), Some(&t), "host=a").await.is_ok());
        // A wrong field is not rescued by a right header.
        assert_eq!(form(session(), Some(&t), "csrf=0").await.err(), Some(403));
        // Bearer clients have no token.
        assert!(form(bearer(), None, "host=a").await.is_ok());
    }

    fn multipart(ident: Identity, header: Option<&str>, fields: &[(&str, &str)]) -> Request {
        let mut body = String::new();
        for (name, value) in fields {
            let file = if *name == "files" {
                "; filename=\"a.pcap\""
            } else {
                ""
            };
            body.push_str(&format!(
                "--B\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str("--B--\r\n");
        request(ident, "multipart/form-data; boundary=B", header, body)
    }

    /// The names of the fields handed out, then "refused" if it was.
    async fn names(ident: Identity, header: Option<&str>, fields: &[(&str, &str)]) -> Vec<String> {
        let req = multipart(ident, header, fields);
        let mut m = match CheckedMultipart::from_request(req, &()).await {
            Ok(m) => m,
            Err(r) => return vec![format!("rejected {}", r.status())],
        };
        let mut out = Vec::new();
        loop {
            match m.next_field().await {
                Ok(Some(f)) => out.push(f.name().unwrap_or("").to_string()),
                Ok(None) => return out,
                Err(UploadError::Refused(_)) => {
                    out.push("refused".into());
                    return out;
                }
                Err(UploadError::Multipart(e)) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn multipart_fields_wait_for_the_token() {
        let t = "t".repeat(64);
        let t = t.as_str();
        assert_eq!(
            names(session(), None, &[("csrf", t), ("files", "x")]).await,
            ["csrf", "files"]
        );
        assert_eq!(
            names(session(), None, &[("files", "x"), ("csrf", t)]).await,
            ["refused"],
            "the token must come before the files"
        );
        assert_eq!(
            names(session(), None, &[("csrf", "0"), ("files", "x")]).await,
            ["csrf", "refused"]
        );
        assert_eq!(
            names(session(), None, &[("csrf", "0")]).await,
            ["csrf", "refused"],
            "no token by the end"
        );
        assert_eq!(
            names(
                session(),
                None,
                &[("csrf", "0"), ("csrf", t), ("files", "x")]
            )
            .await,
            ["csrf", "csrf", "files"]
        );
        assert_eq!(
            names(session(), Some(t), &[("files", "x")]).await,
            ["files"]
        );
        assert_eq!(names(bearer(), None, &[("files", "x")]).await, ["files"]);
    }

    /// A body of `head`, then `n` bytes of filler, then `tail`, produced as
    /// it is read and, like a socket, not always ready; `pulled` counts the
    /// bytes handed out.
    struct Lazy {
        ready: bool,
        parts: Vec<u8>,
        head_len: usize,
        filler: u64,
        tail: Vec<u8>,
        pulled: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl tokio::io::AsyncRead for Lazy {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.ready = !self.ready;
            if !self.ready {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            let n = if self.head_len > 0 {
                let n = self.head_len.min(buf.remaining());
                let at = self.parts.len() - self.head_len;
                buf.put_slice(&self.parts[at..at + n]);
                self.head_len -= n;
                n
            } else if self.filler > 0 {
                let n = (self.filler as usize).min(buf.remaining());
                buf.put_slice(&vec![b'a'; n]);
                self.filler -= n as u64;
                n
            } else {
                let n = self.tail.len().min(buf.remaining());
                let rest = self.tail.split_off(n);
                buf.put_slice(&std::mem::replace(&mut self.tail, rest));
                n
            };
            self.pulled
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_huge_token_field_is_refused_without_reading_it() {
        let pulled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let head = b"--B\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n".to_vec();
        let body = Lazy {
            ready: false,
            head_len: head.len(),
            parts: head,
            filler: 300 << 20,
            tail: b"\r\n--B--\r\n".to_vec(),
            pulled: pulled.clone(),
        };
        let mut req = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=B")
            .body(Body::from_stream(tokio_util::io::ReaderStream::new(body)))
            .unwrap();
        req.extensions_mut().insert(session());
        // As on the import route, whose body limit is 4 GiB.
        let handler = |mut m: CheckedMultipart| async move {
            match m.next_field().await {
                Err(UploadError::Refused(e)) => e.into_response(),
                _ => StatusCode::OK.into_response(),
            }
        };
        let handler = axum::handler::Handler::<_, ()>::layer(
            handler,
            axum::extract::DefaultBodyLimit::max(4 << 30),
        );
        let resp = axum::handler::Handler::call(handler, req, ()).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let read = pulled.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read < 1 << 20, "read {read} bytes of a 300 MB field");
    }

    #[test]
    fn form_pairs_keep_repeated_keys_and_decode() {
        let p = form_pairs(b"host=lab%2Flocal%2Fa&host=b+c&filter=udp+port+5060&x=%zz&y=%4");
        assert_eq!(
            p,
            [
                ("host".into(), "lab/local/a".into()),
                ("host".into(), "b c".into()),
                ("filter".into(), "udp port 5060".into()),
                ("x".into(), "%zz".into()),
                ("y".into(), "%4".into()),
            ]
        );
    }
}
