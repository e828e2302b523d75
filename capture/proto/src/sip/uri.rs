//! name-addr / addr-spec (From, To, Contact) and SIP/tel URI helpers.

use super::message::trim;

/// A parsed From/To style header value, borrowing from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name without surrounding quotes (escapes left as written).
    pub display: Option<&'a [u8]>,
    /// The URI without angle brackets.
    pub uri: &'a [u8],
    /// The `tag` header parameter.
    pub tag: Option<&'a [u8]>,
}

/// Parses `"Display" <uri>;params`, `Display <uri>;params`, `<uri>;params` or
/// a bare `uri;params` (where, per RFC 3261 section 20, the `;params` belong
/// to the header, not the URI). `None` if there is no URI.
pub fn parse_name_addr(v: &[u8]) -> Option<NameAddr<'_>> {
    let v = trim(v);
    let mut display: Option<&[u8]> = None;
    let mut rest = v;
    if let Some(after_quote) = v.strip_prefix(b"\"") {
        let close = closing_quote(after_quote)?;
        display = after_quote.get(..close);
        rest = after_quote.get(close.checked_add(1)?..)?;
    }
    let (uri, params) = match memchr::memchr(b'<', rest) {
        Some(lt) => {
            if display.is_none() {
                let d = trim(rest.get(..lt)?);
                display = (!d.is_empty()).then_some(d);
            }
            let inner = rest.get(lt.checked_add(1)?..)?;
            let gt = memchr::memchr(b'>', inner)?;
            (
                trim(inner.get(..gt)?),
                inner.get(gt.checked_add(1)?..).unwrap_or(&[]),
            )
        }
        None => {
            // addr-spec without brackets: a quoted display name needs brackets.
            if display.is_some() {
                return None;
            }
            match memchr::memchr(b';', rest) {
                Some(semi) => (trim(rest.get(..semi)?), rest.get(semi..).unwrap_or(&[])),
                None => (rest, &[][..]),
            }
        }
    };
    if uri.is_empty() {
        return None;
    }
    let tag = header_param(params, b"tag");
    Some(NameAddr { display, uri, tag })
}

/// Index of the closing `"` in a quoted string body, honouring `\` escapes.
fn closing_quote(s: &[u8]) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.iter().enumerate() {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => return Some(i),
            _ => {}
        }
    }
    None
}

/// Value of `;name=value` in a header parameter list (name case-insensitive).
fn header_param<'p>(params: &'p [u8], name: &[u8]) -> Option<&'p [u8]> {
    params.split(|b| *b == b';').find_map(|p| {
        let eq = memchr::memchr(b'=', p)?;
        if !trim(p.get(..eq)?).eq_ignore_ascii_case(name) {
            return None;
        }
        // A following header-list element (", <sip:...>") is not part of it.
        let v = p.get(eq.checked_add(1)?..)?;
        let v = match memchr::memchr(b',', v) {
            Some(c) => v.get(..c)?,
            None => v,
        };
        let v = trim(v);
        (!v.is_empty()).then_some(v)
    })
}

/// Scheme-specific part of `sip:`, `sips:` or `tel:` URIs (scheme is
/// case-insensitive). Angle brackets are tolerated.
fn strip_scheme(uri: &[u8]) -> Option<(bool, &[u8])> {
    let uri = trim(uri);
    let uri = uri.strip_prefix(b"<").unwrap_or(uri);
    let uri = match memchr::memchr(b'>', uri) {
        Some(gt) => uri.get(..gt)?,
        None => uri,
    };
    let colon = memchr::memchr(b':', uri)?;
    let scheme = uri.get(..colon)?;
    let rest = uri.get(colon.checked_add(1)?..)?;
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        Some((false, rest))
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        Some((true, rest))
    } else {
        None
    }
}

/// User part of a SIP/SIPS/tel URI: `sip:+4412@host;x` -> `+4412`,
/// `tel:+1555;phone-context=x` -> `+1555`. User parameters (`;npdi`) and a
/// password (`:secret`) are cut off because callers want the number.
pub fn uri_user(uri: &[u8]) -> Option<&[u8]> {
    let (is_tel, rest) = strip_scheme(uri)?;
    let user = if is_tel {
        rest
    } else {
        // userinfo ends at '@'; '@' cannot appear unescaped in the host part
        // or parameters, but may in `?headers`, so stop the search there.
        let search = match memchr::memchr(b'?', rest) {
            Some(q) => rest.get(..q)?,
            None => rest,
        };
        let at = memchr::memrchr(b'@', search)?;
        let userinfo = rest.get(..at)?;
        match memchr::memchr(b':', userinfo) {
            Some(c) => userinfo.get(..c)?,
            None => userinfo,
        }
    };
    let user = match memchr::memchr2(b';', b'?', user) {
        Some(i) => user.get(..i)?,
        None => user,
    };
    (!user.is_empty()).then_some(user)
}

/// Host part of a SIP/SIPS URI (IPv6 references returned without brackets):
/// `sip:bob@[fd00::1]:5060;lr` -> `fd00::1`. `None` for tel: URIs.
pub fn uri_host(uri: &[u8]) -> Option<&[u8]> {
    let (is_tel, rest) = strip_scheme(uri)?;
    if is_tel {
        return None;
    }
    let search = match memchr::memchr(b'?', rest) {
        Some(q) => rest.get(..q)?,
        None => rest,
    };
    let hostport = match memchr::memrchr(b'@', search) {
        Some(at) => rest.get(at.checked_add(1)?..)?,
        None => rest,
    };
    let host = if let Some(v6) = hostport.strip_prefix(b"[") {
        v6.get(..memchr::memchr(b']', v6)?)?
    } else {
        let end = hostport
            .iter()
            .position(|b| matches!(b, b':' | b';' | b'?' | b'>' | b' ' | b'\t'))
            .unwrap_or(hostport.len());
        hostport.get(..end)?
    };
    (!host.is_empty()).then_some(host)
}
