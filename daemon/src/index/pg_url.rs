//! The pgvector backend's connection string: libpq's two forms read as
//! libpq reads them, the TLS keys (`sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey`) taken out and carried out by a rustls connector, and the
//! password kept out of every message.
//!
//! Why the URL is read here first: tokio-postgres knows `sslmode` only as
//! `disable`, `prefer` and `require`, and it refuses the other keys, while
//! users copy connection strings written for libpq (`psql`), where
//! `verify-full` with a CA file is what a hosted database's instructions say.
//! So those keys are taken out of the string, the rest goes to
//! tokio-postgres, and the modes mean what libpq's documentation says:
//!
//! | `sslmode` | encrypted | certificate chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | no | | |
//! | `allow`, `prefer` (the default) | when the server offers it | only with `sslrootcert` | no |
//! | `require` | yes | only with `sslrootcert` | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! The chain is checked against `sslrootcert` when it is given (a PEM file,
//! or `system` for the system's trust store), else `~/.postgresql/root.crt`
//! when that exists (libpq's default), else the system's trust store.
//! PostgreSQL never offers TLS on a Unix socket, so a socket connection with
//! the default mode stays plain, as with libpq.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Result<Mode, String> {
        Ok(match value {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not a mode: use disable, allow, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    /// What tokio-postgres does with the connection; the checks of the
    /// `verify-*` modes are the connector's.
    fn wire(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            // tokio-postgres has no `allow` (plain first, TLS if the server
            // insists); trying TLS first reaches every server `allow` reaches.
            Mode::Allow | Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// Where the trusted certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// The system's trust store (`sslrootcert=system`).
    System,
    /// A PEM file of CA certificates.
    File(PathBuf),
}

/// The TLS settings taken out of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: Mode,
    /// `sslrootcert`, when given.
    root: Option<Roots>,
    /// `sslcert` and `sslkey`: a client certificate for servers that
    /// authenticate by certificate.
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

/// The keys this module takes out of a connection string.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits `url` (either form libpq knows) into the string tokio-postgres
/// reads, without the TLS keys, and the TLS settings. The error says which
/// key is wrong.
pub fn split(url: &str) -> Result<(String, TlsSettings), String> {
    let (rest, pairs) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)?
    } else {
        split_key_values(url)?
    };
    let mut settings = TlsSettings {
        mode: Mode::Prefer,
        root: None,
        client_cert: None,
        client_key: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => settings.mode = Mode::parse(&value)?,
            "sslrootcert" if value == "system" => settings.root = Some(Roots::System),
            "sslrootcert" => settings.root = Some(Roots::File(PathBuf::from(value))),
            "sslcert" => settings.client_cert = Some(PathBuf::from(value)),
            "sslkey" => settings.client_key = Some(PathBuf::from(value)),
            _ => unreachable!("only TLS keys are taken out"),
        }
    }
    if settings.client_cert.is_some() != settings.client_key.is_some() {
        return Err("sslcert and sslkey go together: give both files, or neither".into());
    }
    Ok((rest, settings))
}

/// The URL form: the TLS keys are query parameters.
fn split_url(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(key)?;
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, percent_decode(value)?));
        } else {
            kept.push(param);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, taken))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{s}` has a bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

/// The key=value form: pairs separated by spaces, a value in single quotes
/// may hold spaces, and a backslash escapes the next character.
fn split_key_values(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in key_value_pairs(s)? {
        if TLS_KEYS.contains(&pair.key.as_str()) {
            taken.push((pair.key, pair.value));
        } else {
            kept.push(&s[pair.span]);
        }
    }
    Ok((kept.join(" "), taken))
}

/// One `key=value` of the key=value form: the key, the value unquoted and
/// unescaped, and the pair's text in the string.
struct Pair {
    key: String,
    value: String,
    span: std::ops::Range<usize>,
}

/// Reads the key=value form as libpq does.
fn key_value_pairs(s: &str) -> Result<Vec<Pair>, String> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(s.len(), |&(o, _)| o);
    let skip_spaces = |i: &mut usize| {
        while at(*i).is_some_and(char::is_whitespace) {
            *i += 1;
        }
    };
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        skip_spaces(&mut i);
        if at(i).is_none() {
            break;
        }
        let start = offset(i);
        let mut key = String::new();
        while let Some(c) = at(i).filter(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
            i += 1;
        }
        skip_spaces(&mut i);
        if at(i) != Some('=') {
            return Err(format!("`{key}` has no value (write key=value)"));
        }
        i += 1;
        skip_spaces(&mut i);
        let mut value = String::new();
        let quoted = at(i) == Some('\'');
        if quoted {
            i += 1;
        }
        loop {
            match at(i) {
                None if quoted => return Err(format!("the value of `{key}` has no closing quote")),
                None => break,
                Some('\'') if quoted => {
                    i += 1;
                    break;
                }
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => {
                    if let Some(c) = at(i + 1) {
                        value.push(c);
                    }
                    i += 2;
                }
                Some(c) => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        pairs.push(Pair {
            key,
            value,
            span: start..offset(i).min(s.len()),
        });
    }
    Ok(pairs)
}

/// `url` for messages, without its password, in either form: the URL's
/// user info and `password` parameter, or the key=value pair, quoted or
/// not. A string that cannot be read is not shown at all.
pub(super) fn redact(url: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let mut out = base.to_string();
        if let (Some(scheme), Some(at)) = (out.find("://"), out.rfind('@')) {
            let creds = &out[scheme + 3..at];
            if let Some(colon) = creds.find(':') {
                out.replace_range(scheme + 3 + colon..at, ":***");
            }
        }
        if let Some(query) = query {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => p.to_string(),
                })
                .collect();
            out = format!("{out}?{}", params.join("&"));
        }
        return out;
    }
    match key_value_pairs(url) {
        Ok(pairs) => pairs
            .iter()
            .map(|p| {
                if p.key.eq_ignore_ascii_case("password") {
                    format!("{}=***", p.key)
                } else {
                    url[p.span.clone()].to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "(a connection string that cannot be read)".into(),
    }
}

impl TlsSettings {
    /// Applies the mode to tokio-postgres' configuration.
    pub fn apply(&self, config: &mut tokio_postgres::Config) {
        config.ssl_mode(self.mode.wire());
    }

    /// The connector for these settings: reads the certificate files, so
    /// a missing or unreadable one is an error at start, naming the file.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, &self.root) {
            // Encryption without a certificate check: what libpq does for
            // these modes unless it was given a CA file to check against.
            (Mode::Allow | Mode::Prefer | Mode::Require, None) => Arc::new(AnyCertificate(provider.clone())),
            (mode, root) => {
                let roots = self.roots(root.as_ref())?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot use the trusted certificates: {e}"))?;
                if mode == Mode::VerifyFull {
                    webpki
                } else {
                    Arc::new(AnyName(webpki))
                }
            }
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "sslcert")?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("sslkey {}: cannot read a private key from it ({e})", key.display()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("sslcert and sslkey do not make a client certificate: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// The trust anchors: `sslrootcert`, else libpq's default file when it
    /// exists, else the system's store.
    fn roots(&self, root: Option<&Roots>) -> Result<RootCertStore, String> {
        let default_file = dirs::home_dir().map(|h| h.join(".postgresql").join("root.crt"));
        let source = match root {
            Some(r) => r.clone(),
            None => match default_file.filter(|f| f.is_file()) {
                Some(f) => Roots::File(f),
                None => Roots::System,
            },
        };
        let mut store = RootCertStore::empty();
        match source {
            Roots::File(path) => {
                for cert in read_certs(&path, "sslrootcert")? {
                    store
                        .add(cert)
                        .map_err(|e| format!("sslrootcert {}: a certificate in it is not usable ({e})", path.display()))?;
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A system store may hold certificates webpki cannot
                    // parse; the others still count.
                    let _ = store.add(cert);
                }
                if store.is_empty() {
                    return Err(
                        "no trusted certificates: the system's store is empty; name the server's CA file with sslrootcert=PATH".into(),
                    );
                }
            }
        }
        Ok(store)
    }
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: cannot read PEM certificates from it ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Accepts any server certificate but still checks that the server holds
/// its key (the handshake signatures): `require` without a CA file.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks the chain but not the host name: `verify-ca`.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // webpki checks the name last, so a name error means the chain
            // and dates passed.
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_form_loses_only_the_tls_keys() {
        let (rest, tls) =
            split("postgresql://u:p@db.lan:5432/books?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(rest, "postgresql://u:p@db.lan:5432/books?application_name=x");
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root, Some(Roots::File("/etc/ca.pem".into())));
        let (rest, tls) = split("postgresql://db.lan/books?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://db.lan/books");
        assert_eq!((tls.mode, tls.root), (Mode::Require, None));
        let (rest, tls) = split("postgresql://db.lan/books").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("postgresql://db.lan/books", Mode::Prefer));
    }

    #[test]
    fn key_value_form_keeps_quotes_and_escapes_of_the_rest() {
        let (rest, tls) = split(r"host=db.lan password='it\'s x' sslmode = verify-ca sslrootcert='/my certs/ca.pem' dbname=books").unwrap();
        assert_eq!(rest, r"host=db.lan password='it\'s x' dbname=books");
        assert_eq!(tls.mode, Mode::VerifyCa);
        assert_eq!(tls.root, Some(Roots::File("/my certs/ca.pem".into())));
        let (_, tls) = split("host=/run/postgresql sslrootcert=system sslmode=verify-full").unwrap();
        assert_eq!(tls.root, Some(Roots::System));
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgresql://u:secret@db.lan/x"), "postgresql://u:***@db.lan/x");
        assert_eq!(redact("postgresql://u@%2Ftmp%2Fpg/x"), "postgresql://u@%2Ftmp%2Fpg/x");
        assert_eq!(
            redact("postgresql://u@db.lan/x?password=secret&sslmode=require"),
            "postgresql://u@db.lan/x?password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=/tmp user=u password=secret dbname=x"),
            "host=/tmp user=u password=*** dbname=x"
        );
        assert_eq!(
            redact(r"host=/tmp password='two \'words' dbname=x"),
            "host=/tmp password=*** dbname=x"
        );
        assert_eq!(
            redact("host=/tmp password='unclosed secret"),
            "(a connection string that cannot be read)"
        );
    }

    #[test]
    fn bad_tls_keys_say_what_is_wrong() {
        let e = split("postgresql://db.lan/books?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode=verify is not a mode"), "{e}");
        let e = split("host=db.lan sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert and sslkey go together"), "{e}");
        let e = split("host=db.lan sslmode").unwrap_err();
        assert!(e.contains("`sslmode` has no value"), "{e}");
        let e = split("host=db.lan sslrootcert='/x").unwrap_err();
        assert!(e.contains("no closing quote"), "{e}");
        let missing = TlsSettings {
            mode: Mode::VerifyFull,
            root: Some(Roots::File("/nonexistent/ca.pem".into())),
            client_cert: None,
            client_key: None,
        };
        let e = missing.connector().err().unwrap();
        assert!(e.contains("sslrootcert /nonexistent/ca.pem"), "{e}");
    }
}
