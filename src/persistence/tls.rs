//! Postgres connections, over TLS when `DATABASE_URL` asks for it, with libpq's meaning of
//! `sslmode` and `sslrootcert`, on rustls.
//!
//! | `sslmode` | TLS | certificate check |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (default) | tried first; plaintext when the server refuses TLS or the handshake fails | none, or the chain when `sslrootcert` is given |
//! | `require` | always | none, or the chain when `sslrootcert` is given (as libpq does) |
//! | `verify-ca` | always | the chain, up to `sslrootcert` |
//! | `verify-full` | always | the chain, and the certificate must name the host of the URL |
//!
//! `sslrootcert` is a PEM file of one or more CA certificates. Without it, `verify-ca` and
//! `verify-full` trust the system's CA store (libpq would read `~/.postgresql/root.crt`
//! instead); `sslrootcert=system` says so explicitly and, as in libpq, then only
//! `verify-full` is accepted. Client certificates (`sslcert`, `sslkey`) are not supported. As in
//! libpq, a connection over a Unix socket never uses TLS.
//!
//! tokio-postgres only knows `disable`/`prefer`/`require` and rejects unknown parameters, so
//! these two are taken out of the URL before tokio-postgres parses the rest, and so is
//! `pgbouncer=true` (Prisma's flag: the URL names PgBouncer in transaction mode, see
//! [`PgConnector::behind_pgbouncer`]).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err(
                "sslmode=allow is not supported (use prefer, which tries TLS first)".to_string(),
            ),
            other => Err(format!(
                "unknown sslmode `{other}` (expected disable, prefer, require, verify-ca or verify-full)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone)]
enum Roots {
    /// `sslrootcert=<path>`
    File(String),
    /// `sslrootcert=system`, or `verify-*` without `sslrootcert`
    System,
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::File(path) => write!(f, "the CA in sslrootcert ({path})"),
            Roots::System => f.write_str("a CA in the system's store"),
        }
    }
}

/// Everything needed to open a connection to the database a `postgres://` URL names, parsed
/// once: the pool opens every connection with it.
pub struct PgConnector {
    config: tokio_postgres::Config,
    mode: SslMode,
    /// `None`: the certificate is not checked (`prefer`/`require` without `sslrootcert`).
    roots: Option<Roots>,
    tls: MakeRustlsConnect,
    /// `host:port`, for messages
    target: String,
    /// `pgbouncer=true` in the URL
    pgbouncer: bool,
}

impl fmt::Debug for PgConnector {
    // never shows the config: it holds the password
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnector")
            .field("target", &self.target)
            .field("mode", &self.mode)
            .field("roots", &self.roots)
            .field("pgbouncer", &self.pgbouncer)
            .finish_non_exhaustive()
    }
}

impl PgConnector {
    /// Parses `url` (a `postgres://` URL with libpq's TLS parameters) and loads `sslrootcert`.
    /// Errors never repeat the URL (it may hold a password).
    pub fn from_url(url: &str) -> Result<PgConnector, String> {
        let (rest, params) = take_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| format!("DATABASE_URL is not a valid Postgres URL: {}", chain(&e)))?;
        let sslrootcert = params.sslrootcert;
        let pgbouncer = params.pgbouncer;
        let system = sslrootcert.as_deref() == Some("system");
        let mode = match params.sslmode {
            Some(mode) => mode,
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system && mode != SslMode::VerifyFull {
            return Err(format!(
                "sslmode={} may not be used with sslrootcert=system (use verify-full)",
                mode.name()
            ));
        }
        let roots = match (mode, sslrootcert) {
            (SslMode::Disable, _) => None,
            (_, Some(path)) if path == "system" => Some(Roots::System),
            (_, Some(path)) => Some(Roots::File(path)),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => Some(Roots::System),
            (SslMode::Prefer | SslMode::Require, None) => None,
        };
        // as libpq: no TLS over a Unix socket, whatever the sslmode
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, Host::Tcp(_)));
        config.ssl_mode(match mode {
            _ if unix_only => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let root_store = match &roots {
            None => None,
            Some(Roots::File(path)) => Some(load_roots_file(path)?),
            Some(Roots::System) => Some(load_system_roots()?),
        };
        network_defaults(&mut config, url);
        let tls = MakeRustlsConnect::new(client_config(root_store, mode == SslMode::VerifyFull)?);
        let target = describe_target(&config);
        Ok(PgConnector {
            config,
            mode,
            roots,
            tls,
            target,
            pgbouncer,
        })
    }

    /// Whether the URL said `pgbouncer=true`: it names PgBouncer (or a pooler like it) in
    /// transaction mode, where consecutive transactions, and statements outside one, may run on
    /// different server connections. Then no connection may rely on its session: no named
    /// prepared statements, no session `SET`, no session advisory lock, no `LISTEN`.
    pub fn behind_pgbouncer(&self) -> bool {
        self.pgbouncer
    }

    /// Opens one connection; its driver task is spawned on the current tokio runtime.
    pub async fn connect(&self) -> Result<AsyncPgConnection, String> {
        let (client, connection) = match self.config.connect(self.tls.clone()).await {
            Ok(pair) => pair,
            // libpq's prefer: a failed handshake is retried without TLS
            Err(e) if self.mode == SslMode::Prefer && is_tls_error(&e) => {
                log::warn!("{}; connecting without TLS", self.explain(&e));
                let mut plain = self.config.clone();
                plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
                plain
                    .connect(self.tls.clone())
                    .await
                    .map_err(|e| self.explain(&e))?
            }
            Err(e) => return Err(self.explain(&e)),
        };
        AsyncPgConnection::try_from_client_and_connection(client, connection)
            .await
            .map_err(|e| format!("while setting up the connection to {}: {e}", self.target))
    }

    /// What went wrong, in words: a certificate that fails its check says which check and
    /// against what.
    fn explain(&self, e: &tokio_postgres::Error) -> String {
        let failed = format!(
            "TLS to Postgres at {} failed (sslmode={})",
            self.target,
            self.mode.name()
        );
        let Some(tls) = find_rustls_error(e) else {
            return if is_tls_error(e) {
                format!("{failed}: {}", chain(e))
            } else {
                format!(
                    "could not connect to Postgres at {}: {}",
                    self.target,
                    chain(e)
                )
            };
        };
        let why = match tls {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => match &self.roots
            {
                Some(roots) => format!("the server's certificate is not signed by {roots}"),
                None => "the server's certificate is not signed by a trusted CA".into(),
            },
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected,
                presented,
            }) => format!(
                "the server's certificate is not valid for the host name {}: it names {}; \
                 sslmode=verify-ca would check the CA only",
                expected.to_str(),
                if presented.is_empty() {
                    "no host".to_string()
                } else {
                    presented
                        .iter()
                        .map(|name| bare_name(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
                "the server's certificate is not valid for the host name in the URL; \
                 sslmode=verify-ca would check the CA only"
                    .into()
            }
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "the server's certificate has expired".into(),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => "the server's certificate is not valid yet".into(),
            other => other.to_string(),
        };
        format!("{failed}: {why}")
    }
}

/// TCP settings for a hung or vanished peer, each unless the URL sets it itself.
///
/// - Keepalives after 10 s idle, every 5 s, 3 missed: an idle pooled connection whose peer is
///   gone (host down, failover, a NAT or firewall that dropped the flow) is closed within about
///   25 s, so the pool discards it instead of handing it out (tokio-postgres' own default
///   starts probing after 2 hours).
/// - `tcp_user_timeout` 30 s: data the peer has not acknowledged for this long (the network
///   path hangs under a query) closes the socket. A request's own deadline (the pool timeout)
///   answers the caller well before; this frees the socket even where no deadline applies
///   (migrations).
/// - `connect_timeout` 10 s: a connection attempt to an address that never answers ends.
///
/// None of these notices a peer that is alive but frozen (its kernel still acknowledges):
/// only the per-operation deadline does (see `DbPool::settle`).
fn network_defaults(config: &mut tokio_postgres::Config, url: &str) {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let named = |key: &str| {
        query
            .split('&')
            .any(|pair| pair.split_once('=').map(|(k, _)| k).unwrap_or(pair) == key)
    };
    if !named("keepalives_idle") {
        config.keepalives_idle(std::time::Duration::from_secs(10));
    }
    if !named("keepalives_interval") {
        config.keepalives_interval(std::time::Duration::from_secs(5));
    }
    if !named("keepalives_retries") {
        config.keepalives_retries(3);
    }
    if !named("tcp_user_timeout") {
        config.tcp_user_timeout(std::time::Duration::from_secs(30));
    }
    if !named("connect_timeout") {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
}

/// `localhost` out of rustls' `DnsName("localhost")` (and the like for IP addresses).
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map(|inner| inner.trim_matches('"'))
        .unwrap_or(presented)
}

/// The TLS parameters taken out of a URL.
#[derive(Debug, Default)]
struct TlsParams {
    sslmode: Option<SslMode>,
    sslrootcert: Option<String>,
    /// `pgbouncer=true` (not a TLS parameter: mnemo's own, as Prisma spells it)
    pgbouncer: bool,
}

/// Whether a `postgres://` URL says `pgbouncer=true` (false for any other URL).
pub fn behind_pgbouncer(url: &str) -> Result<bool, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(false);
    }
    take_tls_params(url).map(|(_, params)| params.pgbouncer)
}

/// Splits `sslmode` and `sslrootcert` off the URL's query string; the rest is for tokio-postgres.
fn take_tls_params(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), params));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(key)?.as_str() {
            "sslmode" => params.sslmode = Some(SslMode::parse(&percent_decode(value)?)?),
            "sslrootcert" => params.sslrootcert = Some(percent_decode(value)?),
            "pgbouncer" => {
                params.pgbouncer = match percent_decode(value)?.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(format!(
                            "DATABASE_URL: pgbouncer={other} (expected true or false)"
                        ));
                    }
                }
            }
            k @ ("sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir") => {
                return Err(format!(
                    "DATABASE_URL: `{k}` is not supported (mnemo does not present client certificates \
                     or check revocation lists)"
                ));
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, params))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(
                    "DATABASE_URL: a `%` in the query string is not followed by two hex digits",
                )?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "DATABASE_URL: the query string is not UTF-8".to_string())
}

fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    if hosts.is_empty() {
        "(no host)".to_string()
    } else {
        hosts.join(",")
    }
}

fn load_roots_file(path: &str) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("sslrootcert {path} holds no PEM certificate"));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            format!("sslrootcert {path} holds a certificate rustls cannot use: {e}")
        })?;
    }
    Ok(roots)
}

fn load_system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!(
            "no CA certificate found in the system's store to check the Postgres server with \
             (install ca-certificates, or give the CA's PEM file as sslrootcert){}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ));
    }
    if unusable > 0 {
        log::debug!("{unusable} system CA certificate(s) could not be parsed and are ignored");
    }
    Ok(roots)
}

/// One rustls configuration per URL: the ring provider mnemo installs (or ring itself when
/// nothing is installed yet), and a verifier doing what the sslmode asks.
fn client_config(roots: Option<RootCertStore>, check_name: bool) -> Result<ClientConfig, String> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = Arc::new(PgVerifier {
        roots: roots.map(Arc::new),
        check_name,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // what libpq 17 offers; Postgres 17 requires it for sslnegotiation=direct, older servers ignore it
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// Checks the server's certificate as far as the sslmode asks: not at all (`roots` is `None`),
/// the chain only (`verify-ca`), or the chain and the host name (`verify-full`). The handshake
/// signatures are always checked, so the server does hold the certificate's key.
#[derive(Debug)]
struct PgVerifier {
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Whether tokio-postgres failed in the TLS negotiation (its error kinds are private; this is
/// its message for that kind).
fn is_tls_error(e: &tokio_postgres::Error) -> bool {
    e.to_string() == "error performing TLS handshake"
}

/// The rustls error behind a failed handshake (tokio-rustls wraps it in an `io::Error`).
fn find_rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(err) = cause {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        cause = err.source();
    }
    None
}

/// An error and its causes, `outer: inner: …` (tokio-postgres shows only the outer part).
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbouncer_flag_is_taken_out_of_the_url() {
        let (rest, params) = take_tls_params(
            "postgres://u@h:6432/db?pgbouncer=true&sslmode=disable&connect_timeout=3",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(params.pgbouncer);
        assert_eq!(rest, "postgres://u@h:6432/db?connect_timeout=3");
        assert_eq!(
            behind_pgbouncer("postgres://u@h/db?pgbouncer=false"),
            Ok(false)
        );
        assert_eq!(behind_pgbouncer("postgres://u@h/db"), Ok(false));
        assert_eq!(behind_pgbouncer("sqlite://x.db?pgbouncer=true"), Ok(false));
        assert!(behind_pgbouncer("postgres://u@h/db?pgbouncer=yes").is_err());
        let connector = PgConnector::from_url("postgres://u@h/db?pgbouncer=true&sslmode=disable")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(connector.behind_pgbouncer());
    }
}
