//! An HTTPS API on 127.0.0.1:0 that requires a client certificate (mutual TLS), for the
//! integrations that authenticate with one.
//!
//! At start the server makes a private certificate authority of its own with `rcgen` (in
//! memory: no files, no `openssl`), a server certificate for `127.0.0.1` and `localhost` and a
//! client certificate (CN `tern-client`), both signed by that CA. The TLS handshake (rustls with
//! the `ring` provider and webpki's client verifier) fails without a client certificate the CA
//! signed, so a request without one, or with one from another CA ([`MtlsServer::stranger`]),
//! never reaches the API. `GET /me` answers with the common name of the certificate the
//! connection was made with, and records it ([`MtlsServer::seen_clients`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The common name of the client certificate the server accepts ([`MtlsServer::client`]).
pub const CLIENT_CN: &str = "tern-client";

/// PEM texts of one party's certificate and key.
#[derive(Clone, Debug)]
pub struct Pem {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert: String,
    /// Its private key (PKCS#8, `-----BEGIN PRIVATE KEY-----`).
    pub key: String,
}

/// Client certificates the server's CA issued, by their DER, with their common names: the
/// handshake has already verified the certificate, so a look-up names the client without an
/// X.509 parser.
type Issued = Arc<Mutex<HashMap<Vec<u8>, String>>>;

/// A certificate authority: its certificate and the key it signs with.
struct Authority {
    cert: Certificate,
    key: KeyPair,
}

impl Authority {
    /// A fresh self-signed CA, valid from yesterday for ten years.
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.distinguished_name.push(DnType::OrganizationName, "Tern tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = days_from_now(-1);
        params.not_after = days_from_now(3650);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self { cert, key }
    }

    /// A client certificate with the common name `cn`, valid from `not_before` to `not_after`.
    fn client(&self, cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> (Certificate, KeyPair) {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        self.sign(params)
    }

    /// Signs a certificate for a fresh key with `params`.
    fn sign(&self, params: CertificateParams) -> (Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("certificate");
        (cert, key)
    }
}

/// The PEM texts of a certificate and its key.
fn pem((cert, key): &(Certificate, KeyPair)) -> Pem {
    Pem { cert: cert.pem(), key: key.serialize_pem() }
}

/// Now plus `days` days (minus, when negative).
fn days_from_now(days: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(days)
}

/// The common name of the client certificate a connection was made with.
#[derive(Clone)]
struct ClientName(String);

/// An HTTPS API that requires a client certificate signed by its own private CA.
pub struct MtlsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    ca: Authority,
    client: Pem,
    stranger: Pem,
    issued: Issued,
    seen: Arc<Mutex<Vec<String>>>,
}

impl MtlsServer {
    /// Starts the server on its own thread and tokio runtime, with a fresh CA, a server
    /// certificate for `127.0.0.1` (an IP subject alternative name) and `localhost` signed by
    /// the CA, and a client certificate (CN `tern-client`) signed by the CA, valid from
    /// yesterday for 90 days; returns once it listens.
    pub fn start() -> Self {
        let ca = Authority::new("Tern test CA");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server names");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = days_from_now(-1);
        params.not_after = days_from_now(89);
        let (server_cert, server_key) = ca.sign(params);

        let client = ca.client(CLIENT_CN, days_from_now(-1), days_from_now(89));
        let issued: Issued = Arc::new(Mutex::new(HashMap::from([(client.0.der().to_vec(), CLIENT_CN.to_string())])));
        let stranger = Authority::new("Stranger CA").client("tern-stranger", days_from_now(-1), days_from_now(89));

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert.der().clone()).expect("CA certificate in the root store");
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().expect("verifier");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route("/me", get(me)).route("/redirect", get(redirect)).with_state(seen.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let issued_for_server = issued.clone();
        std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send addr");
                serve(listener, acceptor, app, issued_for_server).await;
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("server started");
        Self { addr, ca, client: pem(&client), stranger: pem(&stranger), issued, seen }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM) that signed the server's and the client's certificates: the
    /// private CA a client must trust.
    pub fn ca_pem(&self) -> String {
        self.ca.cert.pem()
    }

    /// The client certificate (CN `tern-client`) and key the server accepts.
    pub fn client(&self) -> Pem {
        self.client.clone()
    }

    /// A client certificate and key made by another CA (CN `tern-stranger`): the server refuses
    /// it.
    pub fn stranger(&self) -> Pem {
        self.stranger.clone()
    }

    /// A client certificate (CN `tern-client`) signed by the server's CA that expires `days` days
    /// from now (already expired when `days` is negative), valid from a day before that or from
    /// yesterday, whichever is earlier: for expiry warnings.
    pub fn client_expiring_in(&self, days: i64) -> Pem {
        let not_after = days_from_now(days);
        let not_before = days_from_now(-1).min(not_after - time::Duration::days(1));
        let issued = self.ca.client(CLIENT_CN, not_before, not_after);
        self.issued.lock().unwrap().insert(issued.0.der().to_vec(), CLIENT_CN.to_string());
        pem(&issued)
    }

    /// The common name of the client certificate of each request to `/me` that completed with
    /// a verified client certificate, in order (its length is how many did).
    pub fn seen_clients(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Accepts connections for as long as the process runs: a failed TLS handshake (no client
/// certificate, or one the CA did not sign) only drops that connection.
async fn serve(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor, app: Router, issued: Issued) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (acceptor, app, issued) = (acceptor.clone(), app.clone(), issued.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| issued.lock().unwrap().get(der.as_ref()).cloned())
                .unwrap_or_else(|| "unknown".to_string());
            let service = TowerToHyperService::new(app.layer(Extension(ClientName(name))));
            // A connection the client drops mid-request is not the test's concern.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// `GET /me`: who the client certificate says the caller is.
async fn me(
    State(seen): State<Arc<Mutex<Vec<String>>>>,
    Extension(ClientName(name)): Extension<ClientName>,
) -> Json<Value> {
    seen.lock().unwrap().push(name.clone());
    Json(json!({"data": {"name": "Ada Lovelace", "via": "mtls", "client": name}}))
}

/// `302 Location: {to}` (a redirect that may leave the origin).
async fn redirect(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let to = q.get("to").cloned().unwrap_or_else(|| "/".into());
    (axum::http::StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_me(server: &MtlsServer, identity: Option<&Pem>) -> reqwest::Result<reqwest::Response> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(server.ca_pem().as_bytes()).unwrap());
        if let Some(pem) = identity {
            builder =
                builder.identity(reqwest::Identity::from_pem(format!("{}{}", pem.cert, pem.key).as_bytes()).unwrap());
        }
        builder.build().unwrap().get(format!("{}/me", server.url())).send().await
    }

    #[test]
    fn requires_a_client_certificate_from_its_ca() {
        let server = MtlsServer::start();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let response = get_me(&server, Some(&server.client())).await.unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["data"]["client"], CLIENT_CN);
            assert_eq!(body["data"]["via"], "mtls");

            let without = get_me(&server, None).await;
            assert!(without.is_err(), "no client certificate: {without:?}");
            let stranger = get_me(&server, Some(&server.stranger())).await;
            assert!(stranger.is_err(), "another CA's certificate: {stranger:?}");
        });
        assert_eq!(server.seen_clients(), vec![CLIENT_CN.to_string()]);
    }
}
