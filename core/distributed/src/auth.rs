//! Cluster credentials: a shared token that the scheduler, every worker and
//! every client hold, and TLS ([`Tls`]: mutual authentication by a cluster CA,
//! and encryption).
//!
//! - It is read from a file (`--token-file`) or the `RASK_TOKEN` environment
//!   variable, never from the command line, where `ps` shows it.
//! - Sessions with the scheduler carry it in their hello message; requests to
//!   a worker's data plane (`Get`, `Put`) carry it in the `x-rask-token`
//!   metadata, checked by [`CheckToken`] before the request reaches the
//!   service, so a peer without it gets no data and can make the worker
//!   allocate nothing.
//! - Comparisons take the same time whatever the bytes ([`same_token`]).

use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The environment variable holding the cluster token.
pub const TOKEN_ENV: &str = "RASK_TOKEN";

/// The gRPC metadata key of the token on data-plane requests.
pub const TOKEN_HEADER: &str = "x-rask-token";

/// Whether two tokens are equal, in time that depends only on their lengths.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    // Keep the loop from being cut short by the optimizer.
    std::hint::black_box(diff) == 0
}

/// Checks that a token can travel as gRPC metadata: 8 to 4096 visible ASCII
/// characters.
pub fn check_token(token: &str, from: &str) -> Result<(), String> {
    if token.is_empty() {
        return Ok(());
    }
    if !(8..=4096).contains(&token.len()) {
        return Err(format!(
            "the cluster token from {from} has {} characters; use 8 to 4096 (for example `openssl rand -hex 32`)",
            token.len()
        ));
    }
    if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the cluster token from {from} contains {c:?}; use visible ASCII characters only (for example `openssl rand -hex 32`)"
        ));
    }
    Ok(())
}

/// The token in a file (surrounding whitespace removed).
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    check_token(&token, &format!("{}", path.display()))?;
    Ok(token)
}

/// The token from `$RASK_TOKEN`, or empty (no token) when it is unset.
pub fn token_from_env() -> Result<String, String> {
    match std::env::var(TOKEN_ENV) {
        Ok(t) => {
            let t = t.trim().to_string();
            check_token(&t, TOKEN_ENV)?;
            Ok(t)
        }
        Err(std::env::VarError::NotPresent) => Ok(String::new()),
        Err(e) => Err(format!("{TOKEN_ENV}: {e}")),
    }
}

/// The token of a process: `--token-file` when given, else `$RASK_TOKEN`,
/// else none.
pub fn resolve_token(file: Option<&std::path::Path>) -> Result<String, String> {
    match file {
        Some(f) => read_token_file(f),
        None => token_from_env(),
    }
}

/// Adds the token to every outgoing data-plane request.
#[derive(Clone)]
pub struct AttachToken(Option<MetadataValue<Ascii>>);

impl AttachToken {
    /// Attaches `token` (nothing when it is empty).
    pub fn new(token: &str) -> Result<Self, String> {
        if token.is_empty() {
            return Ok(AttachToken(None));
        }
        check_token(token, "the configuration")?;
        let v = token.parse().map_err(|_| "the cluster token is not valid metadata".to_string())?;
        Ok(AttachToken(Some(v)))
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(TOKEN_HEADER, v.clone());
        }
        Ok(req)
    }
}

/// Refuses data-plane requests without the cluster's token.
#[derive(Clone)]
pub struct CheckToken {
    token: Arc<str>,
    worker: Arc<str>,
}

impl CheckToken {
    /// Checks against `token` (everything passes when it is empty).
    pub fn new(token: &str, worker: &str) -> Self {
        CheckToken { token: token.into(), worker: worker.into() }
    }
}

impl Interceptor for CheckToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if self.token.is_empty() {
            return Ok(req);
        }
        let given = req.metadata().get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
        match given {
            Some(t) if same_token(t, &self.token) => Ok(req),
            Some(_) => Err(Status::unauthenticated(format!(
                "worker {} refused the request: wrong cluster token; give every process the same --token-file or {TOKEN_ENV}",
                self.worker
            ))),
            None => Err(Status::unauthenticated(format!(
                "worker {} refused the request: no cluster token; this cluster needs one (--token-file or {TOKEN_ENV})",
                self.worker
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_content_and_length() {
        assert!(same_token("abcdefgh", "abcdefgh"));
        assert!(!same_token("abcdefgh", "abcdefgi"));
        assert!(!same_token("abcdefgh", "abcdefghi"));
        assert!(!same_token("", "x"));
        assert!(same_token("", ""));
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        assert!(check_token("short", "x").unwrap_err().contains("8 to 4096"));
        assert!(check_token("has a space", "x").unwrap_err().contains("visible ASCII"));
        assert!(check_token("0123456789abcdef", "x").is_ok());
    }

    #[test]
    fn the_interceptor_refuses_missing_and_wrong_tokens() {
        let mut check = CheckToken::new("0123456789abcdef", "w1");
        let err = check.call(Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("no cluster token"), "{}", err.message());
        let mut wrong = AttachToken::new("fedcba9876543210").unwrap();
        let err = check.call(wrong.call(Request::new(())).unwrap()).unwrap_err();
        assert!(err.message().contains("wrong cluster token"), "{}", err.message());
        let mut right = AttachToken::new("0123456789abcdef").unwrap();
        assert!(check.call(right.call(Request::new(())).unwrap()).is_ok());
    }
}

/// TLS material of a process (PEM files): the cluster's CA, which every
/// peer's certificate must chain to, and this process's certificate and key.
/// Both sides of every connection present a certificate (mutual TLS, as
/// Dask's `distributed.comm.tls` with `require_encryption`), and a client
/// checks that the server's certificate names the host it dialled.
#[derive(Clone)]
pub struct Tls {
    ca: tonic::transport::Certificate,
    identity: tonic::transport::Identity,
    /// Where it was read from (for messages and child processes).
    pub files: TlsFiles,
}

/// The three PEM files of [`Tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate (`--tls-ca-file`).
    pub ca: std::path::PathBuf,
    /// This process's certificate, signed by the CA (`--tls-cert`).
    pub cert: std::path::PathBuf,
    /// Its private key (`--tls-key`).
    pub key: std::path::PathBuf,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// The environment variables holding the TLS files of a client (`rask search`
/// and other specs): CA, certificate and key.
pub const TLS_ENV: [&str; 3] = ["RASK_TLS_CA_FILE", "RASK_TLS_CERT", "RASK_TLS_KEY"];

impl Tls {
    /// Reads the three files; the error names the file that is missing or
    /// not PEM.
    pub fn load(files: TlsFiles) -> Result<Tls, String> {
        let read = |path: &std::path::Path, what: &str| -> Result<Vec<u8>, String> {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read the TLS {what} {}: {e}", path.display()))?;
            if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err(format!("the TLS {what} {} is not a PEM file", path.display()));
            }
            Ok(bytes)
        };
        let ca = read(&files.ca, "CA certificate (--tls-ca-file)")?;
        let cert = read(&files.cert, "certificate (--tls-cert)")?;
        let key = read(&files.key, "key (--tls-key)")?;
        Ok(Tls {
            ca: tonic::transport::Certificate::from_pem(ca),
            identity: tonic::transport::Identity::from_pem(cert, key),
            files,
        })
    }

    /// From the three flags: all or none.
    pub fn from_flags(
        ca: Option<std::path::PathBuf>,
        cert: Option<std::path::PathBuf>,
        key: Option<std::path::PathBuf>,
    ) -> Result<Option<Tls>, String> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Tls::load(TlsFiles { ca, cert, key }).map(Some),
            _ => Err("TLS needs all three of --tls-ca-file, --tls-cert and --tls-key".into()),
        }
    }

    /// From `$RASK_TLS_CA_FILE`, `$RASK_TLS_CERT` and `$RASK_TLS_KEY` (none when
    /// all three are unset).
    pub fn from_env() -> Result<Option<Tls>, String> {
        let get = |name: &str| std::env::var_os(name).map(std::path::PathBuf::from);
        Tls::from_flags(get(TLS_ENV[0]), get(TLS_ENV[1]), get(TLS_ENV[2]))
            .map_err(|e| format!("{e} (here: the environment variables {})", TLS_ENV.join(", ")))
    }

    /// The server side: this identity, and client certificates required.
    pub(crate) fn server(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// The client side towards `host`.
    pub(crate) fn client(&self, host: &str) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(host)
    }
}

/// An endpoint for `host:port`: plain HTTP/2, or TLS when `tls` is given.
pub(crate) fn endpoint(
    addr: &str,
    tls: Option<&Tls>,
) -> Result<tonic::transport::Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ep = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| format!("{addr} is not an address: {e}"))?;
    match tls {
        None => Ok(ep),
        Some(t) => {
            let host = match addr.rsplit_once(':') {
                Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
                None => addr,
            };
            ep.tls_config(t.client(host)).map_err(|e| format!("TLS towards {addr}: {e}"))
        }
    }
}

/// Why `--token` is refused on every command line.
pub(crate) const TOKEN_ON_COMMAND_LINE: &str = "--token is not accepted: a token on the command line is visible to every user through `ps`; put it in a file readable only by you and pass --token-file PATH, or set RASK_TOKEN";
