//! Redis URLs read with a real URL parser: check them, find their database, print them without credentials.
//!
//! A leaf module: it imports nothing of kitchen's and needs no cargo feature,
//! so the command line checks a URL the same way in a build without Redis.
//! The redis crate reads URLs with the same parser (`url`), so what this
//! module sees is what the client will connect to.
//!
//! ```
//! use kitchen::redis_url::{database, redact};
//!
//! assert_eq!(redact("redis://alice:S3cr3t@h:6379/5"), "redis://alice:***@h:6379/5");
//! assert_eq!(
//!     redact("redis+unix:///run/r.sock?db=5&pass=S3cr3t"),
//!     "redis+unix:///run/r.sock?db=5&pass=***"
//! );
//! assert_eq!(database("redis://h:6379/5"), Some(5));
//! ```

use url::Url;

/// What a Redis URL looks like, for hints.
pub const SHAPE: &str =
    "redis://[user:password@]host[:port][/db], or redis+unix:///path/to/redis.sock[?db=N]";

/// The schemes kitchen accepts: those the redis crate reads, less valkey's names.
const SCHEMES: [&str; 4] = ["redis", "rediss", "redis+unix", "unix"];

/// Schemes whose address is a socket path, whose database and credentials
/// the redis crate reads from the query string (`?db=5&user=u&pass=p`).
const UNIX_SCHEMES: [&str; 2] = ["redis+unix", "unix"];

/// What stands in for a secret.
const MASK: &str = "***";

/// Query parameters whose values are shown. Every other value is masked: the
/// redis crate reads `user` and `pass` from the query, and an allow-list
/// stays safe if it learns to read more.
const SHOWN_PARAMS: [&str; 2] = ["db", "protocol"];

/// `url` with every credential replaced by `***`, safe to print and log.
///
/// Masks a password in the userinfo (`redis://alice:***@h/5`), a lone
/// userinfo, which is as often a token as a user name (`rediss://***@h/0`),
/// every query value but `db` and `protocol` (`?db=5&pass=***`) and any
/// fragment. A URL the parser cannot read, or reads otherwise than its
/// writer meant (a password with an unescaped `/`, `?`, `#` or `@`), is
/// masked up to its last `@`, or entirely.
pub fn redact(url: &str) -> String {
    parse(url)
        .and_then(redact_parsed)
        .unwrap_or_else(|| redact_raw(url))
}

/// The database `url` selects: the path of a TCP URL (`redis://h/5`), the
/// `db` parameter of a socket URL (`redis+unix:///r.sock?db=5`), 0 when it
/// names none (as Redis does); `None` when the URL does not parse or the
/// database is not a number.
pub fn database(url: &str) -> Option<i64> {
    let u = parse(url)?;
    if is_unix(&u) {
        // The redis crate collects the query into a map: the last `db` wins.
        match u.query_pairs().filter(|(k, _)| k == "db").last() {
            Some((_, db)) => db.parse().ok(),
            None => Some(0),
        }
    } else {
        match u.path().trim_matches('/') {
            "" => Some(0),
            db => db.parse().ok(),
        }
    }
}

/// Whether `url` asks for TLS (`rediss://`).
pub fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// The ACL user `url` logs in as: its user name, or `default` (Redis's
/// user for a bare password or none).
pub fn user(url: &str) -> String {
    let Some(u) = parse(url) else {
        return "default".to_owned();
    };
    let name = if is_unix(&u) {
        u.query_pairs()
            .filter(|(k, _)| k == "user")
            .last()
            .map(|(_, v)| v.into_owned())
    } else {
        // A lone userinfo is a password to the redis crate: the default user.
        u.password().map(|_| percent_decode(u.username()))
    };
    name.filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// `%40` as `@`, as the redis crate reads a user name.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host `url` names, for TLS messages (`127.0.0.1`, `localhost`).
pub fn host(url: &str) -> Option<String> {
    parse(url)?.host_str().map(str::to_owned)
}

/// Checks `url` for `--redis-url`; `Err` is the reason, for a usage error.
///
/// The reason shows the URL only as [`redact`] prints it, so no form of
/// password reaches the terminal.
pub fn validate(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    if !scheme.is_some_and(|s| SCHEMES.contains(&s)) {
        return Err(format!("`{}` is not a Redis URL: use {SHAPE}", redact(url)));
    }
    let bad = |why: String| format!("`{}` {why}", redact(url));
    let Some(u) = parse(url) else {
        return Err(bad(format!(
            "is not a Redis URL: use {SHAPE}, and percent-encode / ? # @ in a password (%2F %3F %23 %40)"
        )));
    };
    if is_unix(&u) {
        // The client opens the path as a file: no host but localhost.
        let host = u.host_str().unwrap_or_default();
        if !(host.is_empty() || host == "localhost") || u.path().len() <= 1 {
            return Err(bad(
                "names no socket: use redis+unix:///path/to/redis.sock".to_owned()
            ));
        }
    } else if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host: use redis://host[:port][/db]".to_owned()));
    }
    if u.scheme() == "rediss" && u.fragment() == Some("insecure") {
        // The redis crate would skip every certificate check.
        return Err(bad(
            "turns certificate checks off (#insecure), which kitchen does not do: drop #insecure, and name a private CA with --tls-ca FILE".to_owned(),
        ));
    }
    match database(url) {
        Some(db) if db >= 0 => Ok(()),
        _ => Err(bad(if is_unix(&u) {
            "names no database: use ?db=N, N a whole number from 0 up".to_owned()
        } else {
            "names no database: use /N after the host, N a whole number from 0 up".to_owned()
        })),
    }
}

/// Parses `raw`, or `None` when it does not parse or the parser's reading
/// may not be its writer's: an `@` that is not the userinfo separator is a
/// password with an unescaped `/`, `?` or `#` (`redis://u:12/ss@h/5`), whose
/// rest the parser takes for a port, path or query, where no mask reaches it.
fn parse(raw: &str) -> Option<Url> {
    let u = Url::parse(raw).ok()?;
    let userinfo = !u.username().is_empty() || u.password().is_some();
    (raw.matches('@').count() == usize::from(userinfo)).then_some(u)
}

fn is_unix(u: &Url) -> bool {
    UNIX_SCHEMES.contains(&u.scheme())
}

/// Masks the credentials of a parsed URL; `None` if the parser refuses a
/// mask, so the caller falls back to masking the raw text.
fn redact_parsed(mut u: Url) -> Option<String> {
    if u.password().is_some() {
        u.set_password(Some(MASK)).ok()?;
    } else if !u.username().is_empty() {
        u.set_username(MASK).ok()?;
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if SHOWN_PARAMS.contains(&k.as_ref()) {
                    v.into_owned()
                } else {
                    MASK.to_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if u.fragment().is_some() {
        u.set_fragment(Some(MASK));
    }
    Some(u.into())
}

/// Masks text the parser cannot be trusted with: everything before the last
/// `@` (a userinfo, whatever a password holds), any query or fragment after
/// it, and everything when an `@` may sit in a query or fragment.
fn redact_raw(raw: &str) -> String {
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, rest))
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (&raw[..s.len() + 3], rest)
        }
        _ => ("", raw),
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) if !userinfo.contains(['?', '#']) => {
            format!("{scheme}{MASK}@{}", mask_query(host))
        }
        Some(_) => format!("{scheme}{MASK}"),
        None => format!("{scheme}{}", mask_query(rest)),
    }
}

/// `host/path` with any query or fragment masked.
fn mask_query(s: &str) -> String {
    match s.find(['?', '#']) {
        Some(i) => format!("{}?{MASK}", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every secret in these tests.
    const SECRETS: [&str; 4] = ["S3cr3t", "pa/ss", "ss@", "T0k3n"];

    fn assert_clean(shown: &str) {
        for s in SECRETS {
            assert!(!shown.contains(s), "{shown} shows {s}");
        }
    }

    #[test]
    fn a_password_in_the_userinfo_is_masked_and_the_user_kept() {
        assert_eq!(
            redact("redis://alice:S3cr3t@h:1/5"),
            "redis://alice:***@h:1/5"
        );
        assert_eq!(redact("redis://:S3cr3t@h/5"), "redis://:***@h/5");
        assert_eq!(
            redact("redis://alice:S3cr3t@[::1]:6379/5"),
            "redis://alice:***@[::1]:6379/5"
        );
        // Percent-encoded, as a password with / or @ must be written.
        assert_eq!(redact("redis://alice:pa%2Fss@h/5"), "redis://alice:***@h/5");
    }

    #[test]
    fn a_lone_userinfo_is_a_token_and_masked() {
        assert_eq!(redact("rediss://T0k3n@h/0"), "rediss://***@h/0");
        assert_clean(&redact("redis://T0k3n@h:1/5?db=2"));
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in [
            "redis://127.0.0.1:6379/5",
            "redis://h",
            "redis://h:1/",
            "rediss://h:6380/0",
            "redis+unix:///run/redis.sock",
            "unix:///run/redis.sock?db=3",
            "redis://h/5?protocol=resp3",
        ] {
            assert_eq!(redact(url), url);
        }
    }

    #[test]
    fn socket_urls_have_their_query_credentials_masked() {
        let shown = redact("redis+unix:///path/r.sock?db=5&pass=S3cr3t");
        assert_eq!(shown, "redis+unix:///path/r.sock?db=5&pass=***");
        let shown = redact("unix:///r.sock?user=alice&password=S3cr3t&db=2");
        assert_eq!(shown, "unix:///r.sock?user=***&password=***&db=2");
        // Encoded or not, and under any name.
        assert_clean(&redact("unix:///r.sock?pass=S3cr%33t"));
        assert_clean(&redact("unix:///r.sock?token=S3cr3t"));
        // An `@` in a query value: masked whole rather than guessed at.
        assert_clean(&redact("unix:///r.sock?pass=x@S3cr3t"));
        assert_clean(&redact("redis://h/5#S3cr3t"));
    }

    #[test]
    fn a_password_with_an_unescaped_slash_never_shows() {
        // The parser reads `pa` as a port: it fails, the raw text is masked.
        let shown = redact("redis://alice:pa/ss@h/5");
        assert_eq!(shown, "redis://***@h/5");
        // The parser reads `12` as a port and `/ss@h/5` as the path: it
        // succeeds, but an `@` outside the userinfo gives the password away.
        let shown = redact("redis://alice:12/ss@h/5");
        assert_eq!(shown, "redis://***@h/5");
        for url in [
            "redis://alice:pa/ss@127.0.0.1:x/5",
            "redis://alice:pa?ss@h/5",
            "redis://alice:pa#ss@h/5",
            "redis://alice:pa@ss@h/5",
            "redis://:pa/ss@h:1/5?pass=S3cr3t",
            "alice:pa/ss@h/5",
        ] {
            assert_clean(&redact(url));
        }
        assert_eq!(redact("redis://alice:pa@ss@h/5"), "redis://***@h/5");
    }

    #[test]
    fn text_that_is_not_a_url_keeps_only_what_cannot_be_secret() {
        assert_eq!(redact("redis://127.0.0.1:x/5"), "redis://127.0.0.1:x/5");
        assert_eq!(redact("redis://h:x/5?pass=S3cr3t"), "redis://h:x/5?***");
        assert_eq!(redact("http://x"), "http://x/");
    }

    #[test]
    fn the_database_comes_from_the_path_or_the_query() {
        assert_eq!(database("redis://h:1/5"), Some(5));
        assert_eq!(database("redis://alice:S3cr3t@h:1/12"), Some(12));
        assert_eq!(database("redis://h:1"), Some(0));
        assert_eq!(database("redis://h:1/"), Some(0));
        assert_eq!(database("redis://h:1/x"), None);
        assert_eq!(database("redis+unix:///r.sock?db=5&pass=S3cr3t"), Some(5));
        assert_eq!(database("unix:///r.sock"), Some(0));
        assert_eq!(database("unix:///r.sock?db=x"), None);
        assert_eq!(database("redis://alice:pa/ss@h/5"), None);
        // What `redact` prints still names the database.
        assert_eq!(database(&redact("redis://alice:pa/ss@h/5")), Some(5));
    }

    #[test]
    fn the_user_is_the_url_s_or_default() {
        assert_eq!(user("redis://kitchen:S3cr3t@h/5"), "kitchen");
        assert_eq!(user("rediss://k%40x:S3cr3t@h/0"), "k@x");
        assert_eq!(user("redis://:S3cr3t@h/5"), "default");
        assert_eq!(user("rediss://T0k3n@h/0"), "default");
        assert_eq!(user("redis://h/5"), "default");
        assert_eq!(user("unix:///r.sock?user=alice&pass=S3cr3t"), "alice");
        assert_eq!(
            host("rediss://u:S3cr3t@localhost:6380/0").as_deref(),
            Some("localhost")
        );
        assert!(is_tls("rediss://h/0") && !is_tls("redis://h/0"));
    }

    #[test]
    fn certificate_checks_cannot_be_turned_off() {
        let why = validate("rediss://u:S3cr3t@h/0#insecure").unwrap_err();
        assert!(why.contains("--tls-ca"), "{why}");
        assert_clean(&why);
    }

    #[test]
    fn valid_urls_pass() {
        for url in [
            "redis://127.0.0.1:6379/5",
            "redis://alice:S3cr3t@h/5",
            "redis://alice:pa%2Fss@h/5",
            "rediss://T0k3n@h/0",
            "redis://h",
            "redis+unix:///run/redis.sock?db=5&pass=S3cr3t",
            "unix:///run/redis.sock",
        ] {
            assert_eq!(validate(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn invalid_urls_are_refused_without_their_secrets() {
        for url in [
            "http://alice:S3cr3t@h/5",
            "localhost:6379",
            "redis://alice:pa/ss@127.0.0.1:x/5",
            "redis://alice:12/ss@h/5",
            "redis://alice:S3cr3t@h:99999/5",
            "redis://alice:S3cr3t@h/notadb",
            "redis://alice:S3cr3t@h/-1",
            "redis://:S3cr3t@/5",
            "redis+unix:///r.sock?db=x&pass=S3cr3t",
            "redis+unix://?pass=S3cr3t",
            "unix://host/r.sock?pass=S3cr3t",
        ] {
            let why = validate(url).expect_err(url);
            assert_clean(&why);
            assert!(why.starts_with('`'), "names the input: {why}");
            assert!(!why.ends_with('.'), "{why}");
        }
        assert!(validate("redis://h/x").unwrap_err().contains("/N"));
        assert!(
            validate("unix:///r.sock?db=x")
                .unwrap_err()
                .contains("?db=N")
        );
        assert!(
            validate("redis://alice:pa/ss@h/5")
                .unwrap_err()
                .contains("percent-encode")
        );
    }
}
