//! Test certificates: a fresh CA and one certificate, signed by it, that
//! names `hosts` (IP addresses become IP subject names), written as PEM files.

use std::path::Path;

use rask::distributed::auth::TlsFiles;

/// Writes `{name}-ca.pem`, `{name}-cert.pem` and `{name}-key.pem` into `dir`.
pub fn certificates(dir: &Path, name: &str, hosts: &[String]) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(hosts.to_vec()).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let path = |f: &str| dir.join(format!("{name}-{f}"));
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    TlsFiles { ca: path("ca.pem"), cert: path("cert.pem"), key: path("key.pem") }
}
