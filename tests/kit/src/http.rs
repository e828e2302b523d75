//! Talking to the web UI over HTTP as a browser would: the login form with
//! its CSRF field, then the session cookie.

pub use reqwest;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};

/// A client that does not follow redirects (the tests check them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of a form's hidden `csrf` field.
pub fn hidden_csrf(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[i..i + 64].to_string()
}

/// Logs in through the form over plain HTTP; returns the
/// `voxtap_session=...` cookie pair, or the status of a refused login.
pub async fn login(base: &str, user: &str, password: &str) -> Result<String, StatusCode> {
    let c = client();
    let page = c.get(format!("{base}/login")).send().await.unwrap();
    let login_cookie = page.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = hidden_csrf(&page.text().await.unwrap());
    let r = c
        .post(format!("{base}/login"))
        .header(COOKIE, login_cookie)
        .form(&[("user", user), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::SEE_OTHER {
        return Err(r.status());
    }
    let set = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("voxtap_session="))
        .expect("session cookie");
    // Cookie hardening.
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    Ok(set.split(';').next().unwrap().to_string())
}
