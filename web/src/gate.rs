//! The gate every request passes: without login, the Host header must name
//! the listening address (DNS rebinding); otherwise who is asking (a
//! session whose credentials still hold, or a throttled bearer token), the
//! role the route needs, the access log and the request metrics.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::config::Role;
use crate::throttle::Refusal;
use crate::{Identity, SESSION_COOKIE, Shared, cookie_value, text};

/// The peer's address, put into every request (the login form's throttle
/// needs it before there is an identity).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<IpAddr>);

fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/login" | "/healthz" | "/static/style.css" | "/favicon.ico"
    ) || path == voxtap_sensor::central::protocol::PATH
}

pub fn wants_json(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

/// The answer to a throttled attempt: 429 with `Retry-After`.
pub fn too_many(r: Refusal, body: Response) -> Response {
    let mut resp = body;
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let secs = r.retry_after().as_secs().max(1);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

enum Who {
    User(Identity),
    Anonymous,
    /// A throttled bearer token: answered without checking it.
    Refused(Response),
}

/// Who is asking: anyone when login is off, else the user of a session
/// cookie or of a bearer token.
async fn identify(st: &Shared, headers: &HeaderMap, addr: Option<IpAddr>, remote: &str) -> Who {
    let ident = |user: String, csrf: Option<String>, role: Role| Identity {
        user,
        csrf,
        remote: remote.to_string(),
        role,
        hub: st.hub.is_some(),
    };
    if let Some(token) = &st.no_auth {
        return Who::User(ident("anonymous".into(), Some(token.clone()), Role::Admin));
    }
    if let Some(id) = cookie_value(headers, SESSION_COOKIE)
        && let Some(s) = st.sessions.get(id)
    {
        // A removed user, or a changed password or token, ends the session.
        match st.users.get(&s.user) {
            Some(u) if crate::auth::eq_const(&s.cred, &st.fingerprint(u)) => {
                let role = u.role.unwrap_or_default();
                return Who::User(ident(s.user, Some(s.csrf), role));
            }
            _ => st.sessions.remove(id),
        }
    }
    let Some(tok) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(String::from)
    else {
        return Who::Anonymous;
    };
    let name = tok.split_once(':').map_or("", |(n, _)| n).to_string();
    let attempt = match st.throttle.attempt(&name, addr).await {
        Ok(a) => a,
        Err(r) => {
            tracing::warn!(target: "access", remote, user = %name, "bearer token throttled");
            let body = axum::Json(serde_json::json!({"error": r.message()})).into_response();
            return Who::Refused(too_many(r, body));
        }
    };
    let st2 = st.clone();
    // argon2 takes tens of ms: keep it off the async threads.
    let user = tokio::task::spawn_blocking(move || st2.check_bearer(&tok))
        .await
        .ok()
        .flatten();
    match user {
        Some(u) => {
            attempt.succeeded();
            let role = st.users.get(&u).and_then(|c| c.role).unwrap_or_default();
            Who::User(ident(u, None, role))
        }
        None => {
            attempt.failed();
            st.metrics.login_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "access", remote, user = %name, "bearer token refused");
            Who::Anonymous
        }
    }
}

/// The answer to an anonymous request that needs a login: 401 for the API,
/// else the login page, coming back here after it for a GET.
fn login_required(req: &Request) -> Response {
    if wants_json(req.uri().path()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"voxtap\"")],
            axum::Json(serde_json::json!({"error": "login required"})),
        )
            .into_response();
    }
    let target = if req.method() == Method::GET {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        format!("/login?next={}", text::url_encode(pq))
    } else {
        "/login".to_string()
    };
    Redirect::to(&target).into_response()
}

/// Whether `host` (a Host header or the URI's authority) names the address
/// the server listens on: an IP literal equal to it (any when it listens on
/// all addresses), or `localhost` when it listens on loopback. A DNS name an
/// attacker rebinds to this address never matches.
pub fn host_allowed(host: Option<&str>, listen: SocketAddr, tls: bool) -> bool {
    let Some(host) = host.map(str::trim) else {
        return false;
    };
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, tail)) => (v6, tail.strip_prefix(':')),
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') => (n, Some(p)),
            _ => (host, None),
        },
    };
    let port_ok = match port {
        Some(p) => p.parse::<u16>().is_ok_and(|p| p == listen.port()),
        None => listen.port() == if tls { 443 } else { 80 },
    };
    let ip = listen.ip();
    let name_ok = match name.parse::<IpAddr>() {
        Ok(asked) => ip.is_unspecified() || asked == ip,
        Err(_) => {
            name.eq_ignore_ascii_case("localhost") && (ip.is_loopback() || ip.is_unspecified())
        }
    };
    port_ok && name_ok
}

fn misdirected() -> Response {
    (
        StatusCode::MISDIRECTED_REQUEST,
        "without login (--insecure-no-auth) this server answers only requests addressed to its listening IP address or localhost (DNS rebinding protection)\n",
    )
        .into_response()
}

/// Authentication, the access log and request metrics.
pub async fn gate(State(st): State<Shared>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let remote = addr.map_or_else(|| "-".into(), |a| a.to_string());
    req.extensions_mut().insert(ClientAddr(addr));
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if st.no_auth.is_some() {
        let host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let ok = st
            .listen
            .get()
            .is_some_and(|l| host_allowed(host, *l, st.secure_cookies));
        if !ok {
            tracing::warn!(target: "access", remote = %remote, host = host.unwrap_or("-"), "refused: Host is not the listening address");
            return misdirected();
        }
    }
    let (user, resp) = match identify(&st, req.headers(), addr, &remote).await {
        Who::User(i) => {
            let user = Some(i.user.clone());
            req.extensions_mut().insert(i);
            (user, next.run(req).await)
        }
        Who::Refused(r) => (None, r),
        Who::Anonymous if is_public(&path) => (None, next.run(req).await),
        Who::Anonymous => (None, login_required(&req)),
    };
    let status = resp.status();
    st.metrics.requests.fetch_add(1, Ordering::Relaxed);
    if status.is_client_error() {
        st.metrics.requests_4xx.fetch_add(1, Ordering::Relaxed);
    } else if status.is_server_error() {
        st.metrics.requests_5xx.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(
        target: "access",
        remote = %remote,
        user = user.as_deref().unwrap_or("-"),
        method = %method,
        path = %path,
        status = status.as_u16(),
        ms = started.elapsed().as_millis() as u64,
    );
    resp
}

/// The answer to a user whose role does not allow what they asked for.
pub fn forbidden(have: Role, need: Role, json: bool) -> Response {
    crate::handlers::AppError::new(
        StatusCode::FORBIDDEN,
        format!(
            "your role ({}) does not allow this; it needs {} (ask an admin)",
            have.as_str(),
            need.as_str()
        ),
    )
    .json_if(json)
    .into_response()
}

/// A route group's layer: only users with at least role `need` pass.
/// Public routes carry no identity and are not in such a group.
pub async fn require_role(State(need): State<Role>, req: Request, next: Next) -> Response {
    match req.extensions().get::<Identity>() {
        Some(i) if i.role >= need => next.run(req).await,
        Some(i) => forbidden(i.role, need, wants_json(req.uri().path())),
        None => login_required(&req),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_must_name_the_listening_address() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"] {
            assert!(host_allowed(Some(ok), lo, false), "{ok}");
        }
        for bad in [
            "rebound.evil.example:8080",
            "rebound.evil.example",
            "127.0.0.1:8081",
            "127.0.0.1",
            "10.0.0.1:8080",
            "127.0.0.1:8080:1",
            "",
        ] {
            assert!(!host_allowed(Some(bad), lo, false), "{bad}");
        }
        assert!(!host_allowed(None, lo, false));
        let any: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert!(host_allowed(Some("192.0.2.7"), any, false));
        assert!(!host_allowed(Some("voxtap.example"), any, false));
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(host_allowed(Some("[::1]:8080"), v6, false));
        assert!(!host_allowed(Some("[::2]:8080"), v6, false));
        let tls: SocketAddr = "192.0.2.1:443".parse().unwrap();
        assert!(host_allowed(Some("192.0.2.1"), tls, true));
    }

    #[test]
    fn only_ip_literals_and_localhost_ever_pass() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let mut x: u64 = 1;
        let parts = [
            "[",
            "]",
            ":",
            "8080",
            "::1",
            "127.0.0.1",
            "localhost",
            "evil",
            ".",
            "%",
            " ",
        ];
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let host: String = (0..(x % 6))
                .map(|i| parts[((x >> (i * 5)) % 11) as usize])
                .collect();
            if host_allowed(Some(&host), any, false) {
                let name = host.trim().trim_end_matches(":8080");
                let name = name.trim_start_matches('[').trim_end_matches(']');
                assert!(
                    name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost"),
                    "{host:?} passed"
                );
            }
        }
    }
}
