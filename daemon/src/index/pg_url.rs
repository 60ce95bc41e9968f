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
//! | `allow`, `prefer` (the default) | when the server offers it | only with a CA file | no |
//! | `require` | yes | only with a CA file | no |
//! | `verify-ca` | yes | yes (a CA is required) | no |
//! | `verify-full` | yes | yes (a CA is required) | yes |
//!
//! The CA is `sslrootcert` (a PEM file), else `~/.postgresql/root.crt`
//! when that exists (libpq's default); a verify mode with neither is an
//! error. `sslrootcert=system` (the system's trust store, which trusts
//! every public authority) goes only with `verify-full` and makes it the
//! default, as in libpq 16. `sslmode` is ignored on a Unix socket, where
//! PostgreSQL never speaks TLS, as libpq ignores it.

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
    let (rest, pairs) = if is_url_form(url) { split_url(url) } else { split_key_values(url)? };
    let mut settings = TlsSettings {
        mode: Mode::Prefer,
        root: None,
        client_cert: None,
        client_key: None,
    };
    let mut explicit_mode = false;
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => {
                settings.mode = Mode::parse(&value)?;
                explicit_mode = true;
            }
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
    // As in libpq 16: the system's store trusts every public authority, so
    // it is only safe with the host name checked; it makes verify-full the
    // default and refuses weaker modes.
    if settings.root == Some(Roots::System) {
        if !explicit_mode {
            settings.mode = Mode::VerifyFull;
        } else if settings.mode != Mode::VerifyFull {
            return Err("sslrootcert=system goes only with sslmode=verify-full (any public certificate would pass otherwise)".into());
        }
    }
    Ok((rest, settings))
}

/// Whether `url` is the URL form (else key=value pairs).
fn is_url_form(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A URL cut where tokio-postgres cuts it: the user info runs to the first
/// `@` (a password may hold `?` or `/`), and the query starts at the first
/// `?` after that. Returns (scheme and user info, the rest before the
/// query, the query).
fn url_parts(url: &str) -> (&str, &str, Option<&str>) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let host_start = url[after_scheme..].find('@').map_or(after_scheme, |i| after_scheme + i + 1);
    let (creds, rest) = url.split_at(host_start);
    match rest.split_once('?') {
        Some((base, query)) => (creds, base, Some(query)),
        None => (creds, rest, None),
    }
}

/// The URL form: the TLS keys are query parameters.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (creds, base, Some(query)) = url_parts(url) else {
        return (url.to_string(), Vec::new());
    };
    let base = format!("{creds}{base}");
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(key);
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, percent_decode(value)));
        } else {
            kept.push(param);
        }
    }
    let rest = if kept.is_empty() {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// `%XX` escapes decoded as tokio-postgres decodes them: a malformed
/// escape stays as it is.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
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
            // Not echoed: an unquoted value with a space (a password, say)
            // ends up here as a "key".
            return Err("a word without `=` (write key=value, and put a value with spaces in single quotes)".into());
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
    if is_url_form(url) {
        let (creds, base, query) = url_parts(url);
        let scheme_end = creds.find("://").map_or(0, |i| i + 3);
        let mut out = match creds[scheme_end..].find(':') {
            Some(colon) if creds.ends_with('@') => format!("{}:***@{base}", &creds[..scheme_end + colon]),
            _ => format!("{creds}{base}"),
        };
        if let Some(query) = query {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    // Keys are percent-decoded before use (`pass%77ord`).
                    Some((key, _)) if percent_decode(key).eq_ignore_ascii_case("password") => "password=***".to_string(),
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
        use tokio_postgres::config::Host;
        // libpq ignores sslmode on a Unix socket, where PostgreSQL never
        // speaks TLS; asking there would only fail.
        let unix_only = !config.get_hosts().is_empty()
            && config.get_hostaddrs().is_empty()
            && config.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
        config.ssl_mode(if unix_only { SslMode::Disable } else { self.mode.wire() });
        // TLS needs a name for the server; with only `hostaddr` given, the
        // address is that name (libpq's behaviour; verify-full then checks
        // the address against the certificate).
        if config.get_hosts().is_empty() {
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
    }

    /// The connector for these settings: reads the certificate files, so
    /// a missing or unreadable one is an error at start, naming the file.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let default_file = dirs::home_dir()
            .map(|h| h.join(".postgresql").join("root.crt"))
            .filter(|f| f.is_file());
        // libpq's choice of trust anchors: sslrootcert, else its default
        // file. A verify mode with neither is an error, as in libpq: the
        // system's store is used only when asked for (`system`).
        let root = self.root.clone().or(default_file.map(Roots::File));
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, root) {
            // No TLS (nothing to check, no file read), or encryption
            // without a certificate check: what libpq does for these modes
            // unless it has a CA file to check against.
            (Mode::Disable, _) | (Mode::Allow | Mode::Prefer | Mode::Require, None) => Arc::new(NoNameCheck {
                provider: provider.clone(),
                chain: None,
            }),
            (Mode::VerifyCa | Mode::VerifyFull, None) => {
                return Err(format!(
                    "sslmode={} needs the server's CA: set sslrootcert=PATH (a PEM file), or sslrootcert=system for the system's trust store with verify-full",
                    if self.mode == Mode::VerifyCa { "verify-ca" } else { "verify-full" }
                ))
            }
            (mode, Some(root)) => {
                let roots = Self::roots(&root)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot use the trusted certificates: {e}"))?;
                if mode == Mode::VerifyFull {
                    webpki
                } else {
                    Arc::new(NoNameCheck {
                        provider: provider.clone(),
                        chain: Some(webpki),
                    })
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

    /// The trust anchors of `source`.
    fn roots(source: &Roots) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match source {
            Roots::File(path) => {
                for cert in read_certs(path, "sslrootcert")? {
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

/// The verifier of the modes below `verify-full`: with no chain to check
/// (`require` without a CA file), any certificate; with one (`verify-ca`,
/// or a CA file given to a weaker mode), the chain but not the host name.
/// Either way the handshake signatures are checked, so the server must hold
/// the certificate's key.
#[derive(Debug)]
struct NoNameCheck {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for NoNameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
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
        // tokio-postgres reads the user info to the first `@`, so a `?` in
        // the password is part of it, not the query's start.
        assert_eq!(
            redact("postgresql://u:pa?ss@h/db?sslmode=require"),
            "postgresql://u:***@h/db?sslmode=require"
        );
        assert_eq!(redact("postgresql://h/db?pass%77ord=secret"), "postgresql://h/db?password=***");
        assert_eq!(
            redact("host=/tmp password='unclosed secret"),
            "(a connection string that cannot be read)"
        );
    }

    #[test]
    fn a_question_mark_in_the_password_does_not_start_the_query() {
        let (rest, tls) = split("postgresql://u:pa?ss@h/db?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(rest, "postgresql://u:pa?ss@h/db");
        assert_eq!(tls.mode, Mode::VerifyFull);
    }

    #[test]
    fn the_system_store_goes_only_with_verify_full() {
        let (_, tls) = split("postgresql://h/db?sslrootcert=system").unwrap();
        assert_eq!(tls.mode, Mode::VerifyFull, "system makes verify-full the default");
        let e = split("postgresql://h/db?sslrootcert=system&sslmode=verify-ca").unwrap_err();
        assert!(e.contains("only with sslmode=verify-full"), "{e}");
        let e = split("host=h sslmode=require sslrootcert=system").unwrap_err();
        assert!(e.contains("only with sslmode=verify-full"), "{e}");
    }

    #[test]
    fn disable_reads_no_file_and_verify_needs_a_ca() {
        let (_, off) = split("postgresql://h/db?sslmode=disable&sslrootcert=/nonexistent/ca.pem").unwrap();
        assert!(off.connector().is_ok(), "nothing is read when TLS is off");
        let (_, verify) = split("postgresql://h/db?sslmode=verify-ca").unwrap();
        // Unless this machine's user has libpq's default CA file.
        let has_default = dirs::home_dir().is_some_and(|h| h.join(".postgresql/root.crt").is_file());
        if !has_default {
            let e = verify.connector().err().expect("no CA, no verification");
            assert!(e.contains("needs the server's CA"), "{e}");
        }
    }

    #[test]
    fn unix_sockets_never_ask_for_tls_and_a_bare_address_is_the_tls_name() {
        let (rest, tls) = split("host=/run/postgresql sslmode=verify-full sslrootcert=/ca.pem").unwrap();
        let mut config: tokio_postgres::Config = rest.parse().unwrap();
        tls.apply(&mut config);
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        let (rest, tls) = split("hostaddr=10.0.0.5 sslmode=require").unwrap();
        let mut config: tokio_postgres::Config = rest.parse().unwrap();
        tls.apply(&mut config);
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert!(matches!(config.get_hosts(), [tokio_postgres::config::Host::Tcp(h)] if h == "10.0.0.5"));
    }

    #[test]
    fn bad_tls_keys_say_what_is_wrong() {
        let e = split("postgresql://db.lan/books?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode=verify is not a mode"), "{e}");
        let e = split("host=db.lan sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert and sslkey go together"), "{e}");
        let e = split("host=db.lan sslmode").unwrap_err();
        assert!(e.contains("a word without `=`"), "{e}");
        let e = split("host=db.lan password=my secret").unwrap_err();
        assert!(!e.contains("secret"), "a password fragment is not echoed: {e}");
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
