//! Client certificates (mutual TLS, RFC 8446 §4.4.2) and private certificate authorities for
//! one integration's API origins.
//!
//! [`ClientTls::parse`] checks the PEM texts an operator gave (a certificate chain, its private
//! key, a CA) once, when the integration is saved, and reads the certificate's subject and
//! expiry (`x509-cert`) for `integrations show`, the console and the expiry warnings.
//! [`HttpClient::with_client_tls`] then builds a client of its own for the integration: it
//! presents the certificate, and trusts the private CA besides the public roots, only on the
//! request's first origin; a redirect that leaves the origin continues on the plain client,
//! which has neither.

use der::Decode as _;
use secrecy::{ExposeSecret, SecretString};

/// Why a certificate, key or CA cannot be used. Messages name the part and what to do;
/// never a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate PEM holds no certificate, or one that does not parse.
    #[error("the client certificate is not a PEM certificate (`-----BEGIN CERTIFICATE-----`): {reason}")]
    BadCertificate {
        /// What is wrong.
        reason: String,
    },
    /// The CA PEM holds no certificate, or one that does not parse.
    #[error("the CA certificate is not a PEM certificate (`-----BEGIN CERTIFICATE-----`): {reason}")]
    BadCa {
        /// What is wrong.
        reason: String,
    },
    /// The key does not go with the certificate, or is no private key.
    #[error(
        "the client key and certificate cannot be used together: {reason}; give the private key (PEM, `-----BEGIN PRIVATE KEY-----` or `-----BEGIN EC PRIVATE KEY-----`) of that certificate"
    )]
    BadIdentity {
        /// What the TLS library said.
        reason: String,
    },
}

/// A checked client certificate (with its key) and private CA for one integration.
#[derive(Clone)]
pub struct ClientTls {
    /// The certificate chain and the key, as one PEM (what the TLS library reads).
    identity: Option<SecretString>,
    /// The private CA's certificates (PEM).
    ca: Option<String>,
    /// The client certificate's facts.
    pub certificate: Option<CertificateFacts>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("certificate", &self.certificate).field("ca", &self.ca.is_some()).finish()
    }
}

/// What `integrations show` and the console say about a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFacts {
    /// The subject (`CN=tern-client`).
    pub subject: String,
    /// The end of its validity, Unix seconds.
    pub not_after: i64,
}

/// How long before a certificate expires it is warned about: 30 days.
pub const EXPIRY_WARNING_SECS: i64 = 30 * 24 * 3600;

impl CertificateFacts {
    /// Whether it expires within [`EXPIRY_WARNING_SECS`] of `now_s` (or has expired).
    pub fn expires_soon(&self, now_s: i64) -> bool {
        self.not_after.saturating_sub(now_s) <= EXPIRY_WARNING_SECS
    }
}

/// The certificates of a PEM text; `fault` words what is wrong (the certificate's or the CA's).
fn certificates(pem_text: &str, fault: fn(String) -> TlsError) -> Result<Vec<x509_cert::Certificate>, TlsError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| fault(e.to_string()))?;
    let certs: Vec<_> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    if certs.is_empty() {
        return Err(fault("no `CERTIFICATE` block".into()));
    }
    certs.iter().map(|b| x509_cert::Certificate::from_der(b.contents()).map_err(|e| fault(e.to_string()))).collect()
}

/// The subject and expiry of the first certificate in `cert_pem`.
///
/// # Errors
/// [`TlsError::BadCertificate`].
pub fn certificate_facts(cert_pem: &str) -> Result<CertificateFacts, TlsError> {
    let chain = certificates(cert_pem, |reason| TlsError::BadCertificate { reason })?;
    let leaf = &chain[0].tbs_certificate;
    Ok(CertificateFacts {
        subject: leaf.subject.to_string(),
        not_after: i64::try_from(leaf.validity.not_after.to_unix_duration().as_secs()).unwrap_or(i64::MAX),
    })
}

impl ClientTls {
    /// Checks the PEM texts: `cert` (the client certificate first, then any intermediates) with
    /// `key`, and `ca`; either pair may be absent. Builds a TLS client once to prove the key
    /// goes with the certificate.
    ///
    /// # Errors
    /// [`TlsError`], naming the part that is wrong.
    pub fn parse(cert: Option<&str>, key: Option<&SecretString>, ca: Option<&str>) -> Result<Self, TlsError> {
        let mut certificate = None;
        let mut identity = None;
        if let (Some(cert), Some(key)) = (cert, key) {
            certificate = Some(certificate_facts(cert)?);
            let pem_text = format!("{}\n{}\n", cert.trim_end(), key.expose_secret().trim_end());
            reqwest::Identity::from_pem(pem_text.as_bytes())
                .and_then(|id| reqwest::Client::builder().use_rustls_tls().identity(id).build())
                .map_err(|e| TlsError::BadIdentity { reason: tls_reason(&e) })?;
            identity = Some(SecretString::from(pem_text));
        }
        if let Some(ca) = ca {
            certificates(ca, |reason| TlsError::BadCa { reason })?;
            reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|e| TlsError::BadCa { reason: tls_reason(&e) })?;
        }
        Ok(Self { identity, ca: ca.map(str::to_string), certificate })
    }

    /// Whether there is anything to use (a certificate or a CA).
    pub fn is_empty(&self) -> bool {
        self.identity.is_none() && self.ca.is_none()
    }

    /// Adds the identity and the CA to a client under construction.
    pub(super) fn apply(&self, mut builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, TlsError> {
        if let Some(identity) = &self.identity {
            let id = reqwest::Identity::from_pem(identity.expose_secret().as_bytes())
                .map_err(|e| TlsError::BadIdentity { reason: tls_reason(&e) })?;
            builder = builder.identity(id);
        }
        if let Some(ca) = &self.ca {
            for c in reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|e| TlsError::BadCa { reason: tls_reason(&e) })?
            {
                builder = builder.add_root_certificate(c);
            }
        }
        Ok(builder)
    }
}

/// What the TLS library's words for a refused certificate or key mean.
const REASONS: &[(&str, &str)] = &[
    ("UnsupportedCertVersion", "the certificate is X.509 version 1, which is not supported: reissue it as version 3"),
    ("KeyMismatch", "the key is not the certificate's"),
    ("no private key", "no private key was found in the key file"),
    ("CertExpired", "the certificate has expired"),
];

/// The TLS library's reason in an operator's words where they are known, else its own
/// without the error chain's repetitions.
fn tls_reason(e: &reqwest::Error) -> String {
    let raw = raw_reason(e);
    REASONS.iter().find(|(says, _)| raw.contains(says)).map_or(raw, |(_, means)| (*means).to_string())
}

fn raw_reason(e: &reqwest::Error) -> String {
    let mut reasons = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reasons.push(s.to_string());
        source = s.source();
    }
    reasons.dedup();
    reasons.join(": ")
}
