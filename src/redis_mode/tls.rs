//! `rediss://`: the certificates a TLS connection trusts and shows, read once, and what a failed handshake means.
//!
//! The redis crate speaks TLS through rustls (with the `ring` provider);
//! this module reads `--tls-ca`, `--tls-cert` and `--tls-key` when the
//! backend opens, so a missing or garbled file fails at once with its name
//! rather than at every connection, and turns rustls's errors into one line
//! that says which check failed and what to do. Host name and certificate
//! checks are always on: kitchen has no insecure mode.
//!
//! [`certificates`] is what any client of the crate needs (the single-server
//! client here, a cluster client elsewhere).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use redis::{Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, RedisError, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError};

use crate::vocab::{Fault, TlsFiles, redact_url};

/// The certificates `tls` names, read and checked; `None` when it names
/// none (a `rediss://` URL then trusts the system's CAs).
pub(crate) fn certificates(tls: &TlsFiles) -> Result<Option<TlsCertificates>, Fault> {
    if !tls.any() {
        return Ok(None);
    }
    let root_cert = match &tls.ca {
        Some(path) => {
            let pem = read("--tls-ca", path)?;
            let certs = certs("--tls-ca", path, &pem)?;
            let mut store = rustls::RootCertStore::empty();
            for cert in certs {
                store.add(cert).map_err(|e| {
                    file_fault(
                        "--tls-ca",
                        path,
                        format!("a certificate in it is not a CA certificate ({e}): give the PEM certificate of the CA that signed the server's"),
                    )
                })?;
            }
            Some(pem)
        }
        None => None,
    };
    let client_tls = match &tls.client {
        Some((cert_path, key_path)) => {
            let client_cert = read("--tls-cert", cert_path)?;
            let chain = certs("--tls-cert", cert_path, &client_cert)?;
            let client_key = read("--tls-key", key_path)?;
            let key = PrivateKeyDer::from_pem_slice(&client_key).map_err(|e| {
                file_fault(
                    "--tls-key",
                    key_path,
                    format!("no private key in it ({e}): give the client certificate's key in PEM (-----BEGIN PRIVATE KEY-----)"),
                )
            })?;
            // The same check the crate makes at every connection, once,
            // naming both files.
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_client_auth_cert(chain, key)
                .map_err(|e| {
                    file_fault(
                        "--tls-key",
                        key_path,
                        format!(
                            "it does not go with --tls-cert {} ({e}): give the key that belongs to that certificate",
                            cert_path.display()
                        ),
                    )
                })?;
            Some(ClientTlsConfig {
                client_cert,
                client_key,
            })
        }
        None => None,
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// A client for `info`, with the certificates of `tls` if it names any.
pub(crate) fn client(info: ConnectionInfo, url: &str, tls: &TlsFiles) -> Result<Client, Fault> {
    let shape = |e: RedisError| Fault::Redis {
        url: redact_url(url),
        detail: e.to_string(),
    };
    match certificates(tls)? {
        Some(certs) => Client::build_with_tls(info, certs).map_err(shape),
        None => Client::open(info).map_err(shape),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, Fault> {
    std::fs::read(path)
        .map_err(|e| file_fault(flag, path, format!("{e}: give a readable PEM file")))
}

/// The PEM certificates in `pem`: at least one, or a fault naming the file.
fn certs(
    flag: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, Fault> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_fault(flag, path, format!("it is not PEM ({e}): {PEM_HINT}")))?;
    if certs.is_empty() {
        return Err(file_fault(
            flag,
            path,
            format!("no certificate in it: {PEM_HINT}"),
        ));
    }
    Ok(certs)
}

const PEM_HINT: &str = "give a certificate in PEM (-----BEGIN CERTIFICATE-----)";

fn file_fault(flag: &'static str, path: &Path, detail: String) -> Fault {
    Fault::TlsFile {
        flag,
        path: path.display().to_string(),
        detail,
    }
}

/// What a TLS failure (or a TLS server met without TLS) means, as a fault
/// with what to do; `None` for any other error. Such a failure is not
/// transient: connecting again meets the same certificate.
pub(crate) fn fault(e: &RedisError, url: &str) -> Option<Fault> {
    let (problem, fix) = explain(rustls_error(e)?, url)?;
    Some(Fault::Tls {
        url: redact_url(url),
        problem,
        fix,
    })
}

/// The problem and the fix for a rustls error; `None` for one that is no
/// TLS problem (an I/O error rustls passed on).
fn explain(err: &rustls::Error, url: &str) -> Option<(String, String)> {
    let host = crate::redis_url::host(url).unwrap_or_else(|| "this host".to_owned());
    let pair = |p: &str, f: &str| Some((p.to_owned(), f.to_owned()));
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => pair(
                "the server's certificate is signed by a CA kitchen does not trust (unknown issuer)",
                "name the CA that signed it with --tls-ca FILE (PEM)",
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => pair(
                "the server's certificate has expired",
                "renew the server's certificate (its tls-cert-file) and restart it",
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => pair(
                "the server's certificate is not valid yet",
                "check the clocks of this machine and the server's",
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Some((
                    format!(
                        "the server's certificate is not valid for {host} (host name mismatch)"
                    ),
                    format!(
                        "connect by a name the certificate lists (its subject alternative names), or reissue it for {host}"
                    ),
                ))
            }
            other => Some((
                format!("the server's certificate was refused ({other:?})"),
                "check the server's certificate and --tls-ca".to_owned(),
            )),
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        ) => pair(
            "the server requires a client certificate",
            "give one with --tls-cert FILE --tls-key FILE",
        ),
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::DecryptError,
        ) => pair(
            "the server refused kitchen's client certificate",
            "give --tls-cert and --tls-key signed by a CA the server trusts (its tls-ca-cert-file)",
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => pair(
            "the server does not speak TLS on this port",
            "use redis:// for a plain port, or the server's tls-port with rediss://",
        ),
        other => Some((
            format!("the handshake failed ({other})"),
            "check the server's TLS settings (tls-port, tls-protocols) and --tls-*".to_owned(),
        )),
    }
}

/// The rustls error behind `e`, if any: the crate keeps it as the inner
/// error of an I/O error, or as its own, behind an `Arc` (which `source`
/// hands out as it is).
fn rustls_error(e: &RedisError) -> Option<&rustls::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(mut err) = cur {
        if let Some(shared) = err.downcast_ref::<Shared>() {
            err = &**shared;
        }
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// After a first connection failed as a protocol mismatch makes it fail
/// (a plain server waits for the end of a line that a TLS hello never
/// sends; a TLS server drops a plain command): asks the server, on a
/// connection of its own, which protocol it speaks; `Some` when it is not
/// the one the URL asked for.
pub(crate) fn mismatch(url: &str) -> Option<Fault> {
    let info = redis::IntoConnectionInfo::into_connection_info(url).ok()?;
    let (problem, fix) = match info.addr() {
        ConnectionAddr::TcpTls { host, port, .. } if speaks_plain(host, *port) => (
            "the server does not speak TLS on this port",
            "use redis:// for a plain port, or the server's tls-port with rediss://",
        ),
        ConnectionAddr::Tcp(host, port) if speaks_tls(host, *port) => (
            "the server speaks only TLS on this port",
            "use rediss:// in --redis-url (with --tls-ca FILE for a private CA)",
        ),
        _ => return None,
    };
    Some(Fault::Tls {
        url: redact_url(url),
        problem: problem.to_owned(),
        fix: fix.to_owned(),
    })
}

/// How long a probe waits for a connection and for the first byte back.
const PROBE_WAIT: Duration = Duration::from_millis(1_000);

/// Opens a connection to `host:port` for a probe.
fn probe(host: &str, port: u16) -> Option<TcpStream> {
    let addr = (host, port).to_socket_addrs().ok()?.next()?;
    let s = TcpStream::connect_timeout(&addr, PROBE_WAIT).ok()?;
    s.set_read_timeout(Some(PROBE_WAIT)).ok()?;
    s.set_write_timeout(Some(PROBE_WAIT)).ok()?;
    Some(s)
}

/// The first byte the server sends back after `hello`.
fn first_byte(mut s: TcpStream, hello: &[u8]) -> Option<u8> {
    s.write_all(hello).ok()?;
    let mut b = [0u8; 1];
    (s.read(&mut b).ok()? == 1).then_some(b[0])
}

/// Whether a plain Redis answers `PING` (`+PONG`, or `-NOAUTH …`).
fn speaks_plain(host: &str, port: u16) -> bool {
    probe(host, port)
        .and_then(|s| first_byte(s, b"PING\r\n"))
        .is_some_and(|b| b == b'+' || b == b'-')
}

/// Whether the server answers a TLS hello with a TLS handshake record
/// (content type 22). Nothing is verified or sent beyond the hello.
fn speaks_tls(host: &str, port: u16) -> bool {
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_owned()) else {
        return false;
    };
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let Ok(mut conn) = rustls::ClientConnection::new(std::sync::Arc::new(config), name) else {
        return false;
    };
    let mut hello = Vec::new();
    if conn.write_tls(&mut hello).is_err() {
        return false;
    }
    probe(host, port)
        .and_then(|s| first_byte(s, &hello))
        .is_some_and(|b| b == 22)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(err: rustls::Error) -> String {
        let (p, f) =
            explain(&err, "rediss://u:S3cr3t@cache.example:6380/0").expect("a TLS problem");
        format!("{p}: {f}")
    }

    #[test]
    fn each_failed_check_says_what_to_do() {
        let cert = rustls::Error::InvalidCertificate;
        assert!(problem(cert(CertificateError::UnknownIssuer)).contains("--tls-ca FILE"));
        assert!(problem(cert(CertificateError::Expired)).contains("has expired"));
        assert!(
            problem(cert(CertificateError::NotValidForName))
                .contains("not valid for cache.example")
        );
        assert!(
            problem(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            ))
            .contains("--tls-cert FILE --tls-key FILE")
        );
        assert!(
            problem(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
                .contains("refused kitchen's client certificate")
        );
    }

    #[test]
    fn no_files_means_the_system_s_cas() {
        assert!(matches!(certificates(&TlsFiles::default()), Ok(None)));
        let missing = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            client: None,
        };
        match certificates(&missing) {
            Err(Fault::TlsFile { flag, path, .. }) => {
                assert_eq!((flag, path.as_str()), ("--tls-ca", "/nonexistent/ca.pem"));
            }
            other => panic!("{other:?}"),
        }
    }
}
