//! HTTP/1.1 on the wire: one parsed request in, one whole response out.
//!
//! Parsing is `httparse`'s (the parser under hyper); this module adds the
//! limits a public server needs: the head and body sizes, and the few headers
//! that decide framing and keep-alive.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The largest request head (request line and headers) we read.
pub const MAX_HEAD: usize = 8 * 1024;
/// The largest request body we read; larger ones get `413` before a byte
/// of them is read. A dish's payload may be this large (the default
/// `--max-payload`); `POST /dishes` refuses more than `--max-payload` itself.
pub const MAX_BODY: usize = crate::defaults::MAX_PAYLOAD;
/// How many headers a request may carry.
const MAX_HEADERS: usize = 32;

/// One request, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    /// The body (empty when none was sent).
    pub body: &'a [u8],
    /// Sent by a page of another site (see [`Head::cross_site`]).
    pub cross_site: bool,
}

/// A complete response; written in one go with its `Content-Length`.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// Extra headers (`Location`, `Retry-After`, `Allow`, …).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Cow<'static, [u8]>,
}

impl Response {
    /// A response with `body` of type `content_type`.
    pub fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response::new(status, "text/plain; charset=utf-8", body.into_bytes())
    }

    /// A JSON response.
    pub fn json(status: u16, body: String) -> Self {
        Response::new(status, "application/json", body.into_bytes())
    }

    /// A JSON error: `{"error": "…"}`.
    pub fn json_error(status: u16, message: &str) -> Self {
        Response::json(status, serde_json::json!({ "error": message }).to_string())
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Serializes the response into `out` with a `Connection: …` header when
    /// one is given (`close`, or `keep-alive` for an HTTP/1.0 client that
    /// asked); no body for `HEAD`.
    pub fn write_to(&self, out: &mut Vec<u8>, connection: Option<&str>, head_only: bool) {
        // Writing into a Vec cannot fail, so the results are ignored.
        let mut s = String::with_capacity(128);
        let _ = write!(
            s,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(s, "{name}: {value}\r\n");
        }
        if let Some(c) = connection {
            let _ = write!(s, "Connection: {c}\r\n");
        }
        s.push_str("\r\n");
        out.extend_from_slice(s.as_bytes());
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The reason phrase for the codes we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        302 => "Found",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// What a complete head says about the request that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, up to and including the blank line.
    pub len: usize,
    /// Where the method ends in the buffer (`[0, method_end)`).
    pub method: (usize, usize),
    /// Where the path (without the query) lies in the buffer.
    pub path: (usize, usize),
    /// `Content-Length`, 0 when absent.
    pub body_len: usize,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// An HTTP/1.0 request: keep-alive must then be said in the response.
    pub http10: bool,
    /// Whether the client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// A browser says a page of another site sent it: `Sec-Fetch-Site:
    /// cross-site`, or an `Origin` whose host is not the `Host` asked
    /// (`null` included). Forms that change state refuse it, so a page the
    /// operator visits cannot purge the dead letters.
    pub cross_site: bool,
}

/// Why a head cannot be served; each maps to one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x syntax.
    Malformed(&'static str),
    /// Head or header count over the limits.
    TooLarge,
    /// A body over [`MAX_BODY`].
    BodyTooLarge(u64),
    /// `Transfer-Encoding` (chunked bodies).
    Unsupported,
    /// A method that carries a body (`POST`, `PUT`, `PATCH`) without
    /// `Content-Length`: where its body ends is unknown.
    LengthRequired,
}

impl HeadError {
    /// The response that tells the client; the connection then closes.
    pub fn response(&self) -> Response {
        match self {
            HeadError::Malformed(why) => {
                Response::json_error(400, &format!("malformed request: {why}"))
            }
            HeadError::TooLarge => Response::json_error(
                431,
                &format!("request head is over {MAX_HEAD} bytes or {MAX_HEADERS} headers"),
            ),
            HeadError::BodyTooLarge(n) => Response::json_error(
                413,
                &format!("request body of {n} bytes is over the limit of {MAX_BODY}"),
            ),
            HeadError::Unsupported => Response::json_error(
                501,
                "Transfer-Encoding is not supported; send the body with Content-Length",
            ),
            HeadError::LengthRequired => Response::json_error(
                411,
                "a request with a body needs Content-Length (0 for none)",
            ),
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("not an HTTP/1.x request")),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let path = target.split('?').next().unwrap_or(target);
    let mut body_len: Option<u64> = None;
    let mut chunked = false;
    let mut connection: Option<&[u8]> = None;
    let mut expect_continue = false;
    let (mut origin, mut host, mut fetch_cross) = (None, None, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value)?;
            if body_len.is_some_and(|m| m != n) {
                return Err(HeadError::Malformed("conflicting Content-Length headers"));
            }
            body_len = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        } else if h.name.eq_ignore_ascii_case("origin") {
            origin = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("host") {
            host = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("sec-fetch-site") {
            fetch_cross = h.value.eq_ignore_ascii_case(b"cross-site");
        }
    }
    // Two framings in one head is how requests are smuggled past a proxy
    // that reads the other one: refuse, whatever either says.
    if chunked && body_len.is_some() {
        return Err(HeadError::Malformed(
            "Content-Length and Transfer-Encoding together",
        ));
    }
    if chunked {
        return Err(HeadError::Unsupported);
    }
    // Without a length, a body would be read as the next request.
    if body_len.is_none() && matches!(method, "POST" | "PUT" | "PATCH") {
        return Err(HeadError::LengthRequired);
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > MAX_BODY as u64 {
        return Err(HeadError::BodyTooLarge(body_len));
    }
    let has = |token: &[u8]| {
        connection.is_some_and(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    let keep_alive = if version == 1 {
        !has(b"close")
    } else {
        has(b"keep-alive")
    };
    Ok(Some(Head {
        len,
        method: offsets(buf, method),
        path: offsets(buf, path),
        body_len: body_len as usize,
        keep_alive,
        http10: version == 0,
        expect_continue,
        cross_site: fetch_cross || origin.is_some_and(|o| !same_origin(o, host)),
    }))
}

/// Whether `Origin` (`scheme://host[:port]`) names the `Host` asked.
fn same_origin(origin: &[u8], host: Option<&[u8]>) -> bool {
    let Some(host) = host else { return false };
    let rest = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    rest.is_some_and(|r| r.eq_ignore_ascii_case(host.trim_ascii()))
}

/// A `Content-Length` value: ASCII digits only (RFC 9110 §8.6). A sign,
/// spaces inside or a list would each be read differently by some other
/// server on the way, so each is a `400`.
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Malformed(
            "Content-Length is not a decimal number",
        ));
    }
    digits
        .iter()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(HeadError::Malformed("Content-Length is out of range"))
}

/// Where `part`, a slice of `buf`, lies in it.
fn offsets(buf: &[u8], part: &str) -> (usize, usize) {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    (start, start + part.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, HeadError> {
        parse_head(raw.as_bytes())
    }

    #[test]
    fn parses_a_get_with_query() {
        let raw = "GET /stats?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = head(raw).expect("valid").expect("complete");
        assert_eq!(&raw[h.path.0..h.path.1], "/stats");
        assert_eq!(&raw[h.method.0..h.method.1], "GET");
        assert_eq!((h.len, h.body_len, h.keep_alive), (raw.len(), 0, true));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let h = |raw| head(raw).expect("valid").expect("complete").keep_alive;
        assert!(!h("GET / HTTP/1.0\r\n\r\n"));
        assert!(h("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!h("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn incomplete_then_limits() {
        assert_eq!(head("GET / HTTP/1.1\r\nHost"), Ok(None));
        assert!(matches!(
            head("NOT HTTP\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(head(&big), Err(HeadError::TooLarge));
        let over = MAX_BODY as u64 + 1;
        let body = format!("POST /dishes HTTP/1.1\r\nContent-Length: {over}\r\n\r\n");
        assert_eq!(head(&body), Err(HeadError::BodyTooLarge(over)));
        let chunked = "POST /dishes HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head(chunked), Err(HeadError::Unsupported));
        let bad = "POST /dishes HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert!(matches!(head(bad), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn content_length_is_digits_only() {
        let with = |v: &str| {
            head(&format!(
                "POST /dishes HTTP/1.1\r\nContent-Length: {v}\r\n\r\n"
            ))
        };
        for bad in [
            "+11",
            "-1",
            "1 1",
            "0x10",
            "11,11",
            "1_0",
            "",
            "١١",
            "99999999999999999999",
        ] {
            assert!(
                matches!(with(bad), Err(HeadError::Malformed(_))),
                "{bad:?} gave {:?}",
                with(bad)
            );
        }
        let ok = with("011").expect("valid").expect("complete");
        assert_eq!(ok.body_len, 11);
        let twice = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(head(twice).expect("valid").expect("complete").body_len, 3);
    }

    #[test]
    fn framing_that_could_be_smuggled_is_refused() {
        let both =
            "POST /dishes HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(head(both), Err(HeadError::Malformed(_))));
        let both =
            "POST /dishes HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert!(matches!(head(both), Err(HeadError::Malformed(_))));
        for method in ["POST", "PUT", "PATCH"] {
            let raw = format!("{method} /dishes HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(head(&raw), Err(HeadError::LengthRequired), "{method}");
            assert_eq!(HeadError::LengthRequired.response().status, 411);
        }
        let get = head("GET / HTTP/1.1\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(get.body_len, 0);
    }

    #[test]
    fn writes_a_whole_response() {
        let mut out = Vec::new();
        Response::text(302, "to /")
            .with("Location", "/")
            .write_to(&mut out, Some("close"), false);
        let s = String::from_utf8(out).expect("utf-8");
        assert!(s.starts_with("HTTP/1.1 302 Found\r\n"), "{s}");
        assert!(
            s.contains("Location: /\r\nConnection: close\r\n\r\nto /\n"),
            "{s}"
        );
        assert!(s.contains("Content-Length: 5\r\n"), "{s}");
    }
}
