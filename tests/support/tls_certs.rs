//! Certificates the TLS tests make themselves (rcgen): a CA, server and
//! client certificates it signed, and the bad ones (expired, for another
//! host, from another CA), as PEM files in a temp dir.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};

use super::redis_server::TlsServerFiles;

/// A certificate and its key, as files.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file the TLS tests use; the dir goes when this is dropped.
pub struct Certs {
    dir: tempfile::TempDir,
    /// The CA that signed the good certificates.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the server trusts.
    pub other_ca: PathBuf,
    /// For 127.0.0.1 and localhost, signed by `ca`.
    pub server: Pair,
    /// For 127.0.0.1 and localhost, expired in 2001.
    pub expired: Pair,
    /// For `elsewhere.example` only.
    pub wrong_name: Pair,
    /// For 127.0.0.1 and localhost, signed by `other_ca`.
    pub foreign_server: Pair,
    /// A client certificate signed by `ca`.
    pub client: Pair,
    /// A client certificate signed by `other_ca`.
    pub foreign_client: Pair,
    /// Not PEM at all.
    pub garbage: PathBuf,
}

impl Certs {
    /// Makes them all.
    pub fn new() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("kitchen-tls-")
            .tempdir()
            .expect("temp dir for certificates");
        let d = dir.path();
        let ca = issuer("kitchen test CA");
        let other = issuer("some other CA");
        let write = |name: &str, text: &str| {
            let p = d.join(name);
            std::fs::write(&p, text).expect("write a PEM file");
            p
        };
        let ca_path = write("ca.pem", &ca.pem());
        let other_path = write("other-ca.pem", &other.pem());
        let loopback = || vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let server = leaf(d, "server", &ca, loopback(), false, false);
        let expired = leaf(d, "expired", &ca, loopback(), false, true);
        let wrong_name = leaf(
            d,
            "wrong-name",
            &ca,
            vec!["elsewhere.example".to_owned()],
            false,
            false,
        );
        let foreign_server = leaf(d, "foreign-server", &other, loopback(), false, false);
        let client = leaf(d, "client", &ca, vec!["kitchen".to_owned()], true, false);
        let foreign_client = leaf(
            d,
            "foreign-client",
            &other,
            vec!["kitchen".to_owned()],
            true,
            false,
        );
        let garbage = write("garbage.pem", "this is not a certificate\n");
        Certs {
            ca: ca_path,
            other_ca: other_path,
            server,
            expired,
            wrong_name,
            foreign_server,
            client,
            foreign_client,
            garbage,
            dir,
        }
    }

    /// The files for a server showing `pair`, trusting clients of `ca`.
    pub fn server_files<'a>(&'a self, pair: &'a Pair, auth_clients: bool) -> TlsServerFiles<'a> {
        TlsServerFiles {
            cert: &pair.cert,
            key: &pair.key,
            ca: &self.ca,
            auth_clients,
        }
    }

    /// A path in the dir that does not exist.
    pub fn missing(&self) -> PathBuf {
        self.dir.path().join("no-such.pem")
    }
}

fn issuer(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

fn leaf(
    dir: &Path,
    name: &str,
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
    client: bool,
    expired: bool,
) -> Pair {
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    if expired {
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
    }
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca).expect("sign a leaf");
    let pair = Pair {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, cert.pem()).expect("write a certificate");
    std::fs::write(&pair.key, key.serialize_pem()).expect("write a key");
    pair
}
