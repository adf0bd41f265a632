//! A small scripted HTTPS stand-in for ARM and its identity providers, for the
//! `arm` client tests. It is deliberately thin: a request log, scripted replies
//! per (method, path), and token endpoints that check credentials the way AAD and
//! ADFS do (secret, or a signed client assertion verified against the registered
//! certificate's public key). The simulator (`sim`) will replace it: tests only
//! use `Stub::base()`, `Stub::ca_path()`, `Stub::requests()` and the `route` script.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const TENANT: &str = "8a3d2c55-7a1f-4e6b-9f0e-1234567890ab";
pub const CLIENT_ID: &str = "0b7e5a6c-96d9-4b7e-9b3a-2f5e8e4f1a11";
pub const SUBSCRIPTION: &str = "d4a1e0c2-3b5f-4c6d-8e7f-0a1b2c3d4e5f";
pub const AUDIENCE: &str =
    "https://management.adfs.azurestack.local/4de154de-f8a8-4017-af41-df619da68155";
/// A stamp host name the stub's certificate also covers (reach it with `HttpOptions::resolve`).
pub const STAMP_ARM_HOST: &str = "management.local.azurestack.external";
pub const SECRET: &str = "s3cr3t-Value~with.chars";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Recorded {
    pub fn api_version(&self) -> Option<&str> {
        self.query.get("api-version").map(String::as_str)
    }
    pub fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// A scripted answer. `{BASE}` in headers and body becomes the stub's base URL (no trailing slash).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, json!({"error": {"code": code, "message": message}}))
    }
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The result of checking one client assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionCheck {
    pub alg: String,
    pub thumbprint_header: String,
    pub thumbprint_matches: bool,
    pub signature_valid: bool,
    pub claims_valid: bool,
}

/// A registered service principal.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub secret: Option<String>,
    pub cert_der: Option<Vec<u8>>,
    /// The certificate's public key, in the form aws-lc-rs verifies with.
    pub public_key: Option<Vec<u8>>,
}

struct Route {
    method: String,
    path: String,
    replies: VecDeque<Reply>,
}

#[derive(Default)]
struct Inner {
    log: Vec<Recorded>,
    routes: Vec<Route>,
    identity: Identity,
    issued: Vec<String>,
    minted: usize,
    expires_in: Option<Value>,
    allowed_api_versions: Option<Vec<String>>,
    assertions: Vec<AssertionCheck>,
}

struct Shared {
    base: String,
    inner: Mutex<Inner>,
}

/// A running stub.
pub struct Stub {
    shared: Arc<Shared>,
    handle: axum_server::Handle<SocketAddr>,
    dir: tempfile::TempDir,
    ca_path: PathBuf,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 / localhost.
fn server_certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "aksup test stamp CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        STAMP_ARM_HOST.to_owned(),
    ])
    .expect("params");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "management.local.azurestack.external",
    );
    let server_cert = params.signed_by(&server_key, &issuer).expect("server cert");
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

/// A client certificate with an RSA key, as a service principal would hold it.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub public_key: Vec<u8>,
}

pub fn client_certificate(name: &str) -> ClientCert {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("rsa key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("cert");
    ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
        public_key: key.public_key_raw().to_vec(),
    }
}

impl Stub {
    pub async fn start() -> Stub {
        let (ca_pem, cert_pem, key_pem) = server_certificates();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_path = dir.path().join("stamp-ca.pem");
        std::fs::write(&ca_path, &ca_pem).expect("write ca");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            base: format!("https://127.0.0.1:{port}"),
            inner: Mutex::new(Inner::default()),
        });
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.into_bytes(),
            key_pem.into_bytes(),
        )
        .await
        .expect("tls config");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls)
            .expect("server")
            .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Stub {
            shared,
            handle,
            dir,
            ca_path,
        }
    }

    /// `https://127.0.0.1:<port>` (no trailing slash).
    pub fn base(&self) -> &str {
        &self.shared.base
    }

    /// The stub's CA certificate (PEM file).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The stub's socket address.
    pub fn addr(&self) -> SocketAddr {
        let port = self
            .shared
            .base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Forgets every issued token: ARM answers 401 to them from now on.
    pub fn revoke_tokens(&self) {
        self.shared.inner.lock().expect("lock").issued.clear();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Registers the service principal the token endpoints accept.
    pub fn register(&self, identity: Identity) {
        self.shared.inner.lock().expect("lock").identity = identity;
    }

    /// `expires_in` of issued tokens (default the string "3600", as v1 endpoints send).
    pub fn set_expires_in(&self, value: Value) {
        self.shared.inner.lock().expect("lock").expires_in = Some(value);
    }

    /// Refuses ARM requests whose api-version is not listed (400 InvalidApiVersionParameter).
    pub fn allow_api_versions(&self, versions: &[&str]) {
        self.shared.inner.lock().expect("lock").allowed_api_versions =
            Some(versions.iter().map(|v| (*v).to_owned()).collect());
    }

    /// Scripts the answers to `method path` (path compared case-insensitively,
    /// query ignored); the last answer repeats.
    pub fn route(&self, method: &str, path: &str, replies: Vec<Reply>) {
        self.shared.inner.lock().expect("lock").routes.push(Route {
            method: method.to_ascii_uppercase(),
            path: path.to_ascii_lowercase(),
            replies: replies.into(),
        });
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.inner.lock().expect("lock").log.clone()
    }

    /// ARM requests only (token endpoints excluded).
    pub fn arm_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.path.ends_with("/oauth2/token"))
            .collect()
    }

    pub fn token_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/oauth2/token"))
            .collect()
    }

    pub fn assertions(&self) -> Vec<AssertionCheck> {
        self.shared.inner.lock().expect("lock").assertions.clone()
    }
}

fn respond(base: &str, reply: &Reply) -> Response {
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply.body.replace("{BASE}", base),
    )
        .into_response();
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value.replace("{BASE}", base)),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response.headers_mut().insert(
        "x-ms-request-id",
        axum::http::HeaderValue::from_static("req-0001"),
    );
    response
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let mut inner = shared.inner.lock().expect("lock");
    inner.log.push(recorded.clone());
    if recorded.path.ends_with("/oauth2/token") {
        let reply = token(&shared.base, &mut inner, &recorded);
        return respond(&shared.base, &reply);
    }
    // ARM: a valid bearer token is required.
    let authorized = recorded
        .headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|token| inner.issued.iter().any(|t| t == token));
    // The metadata endpoint is public.
    if !authorized && !recorded.path.eq_ignore_ascii_case("/metadata/endpoints") {
        let reply = Reply::error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
            .header(
                "WWW-Authenticate",
                &format!(
                    "Bearer authorization_uri=\"https://login.windows.net/{TENANT}\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\""
                ),
            );
        return respond(&shared.base, &reply);
    }
    if let (Some(allowed), Some(version)) = (&inner.allowed_api_versions, recorded.api_version())
        && !allowed.iter().any(|a| a == version)
        && !recorded.path.contains("/operations/")
    {
        let reply = Reply::error(
            400,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'.",
                allowed.join(",")
            ),
        );
        return respond(&shared.base, &reply);
    }
    let path = recorded.path.to_ascii_lowercase();
    let method = recorded.method.clone();
    let reply = inner
        .routes
        .iter_mut()
        .find(|route| route.method == method && route.path == path)
        .map(|route| {
            if route.replies.len() > 1 {
                route
                    .replies
                    .pop_front()
                    .unwrap_or_else(|| Reply::empty(500))
            } else {
                route
                    .replies
                    .front()
                    .cloned()
                    .unwrap_or_else(|| Reply::empty(500))
            }
        })
        .unwrap_or_else(|| {
            Reply::error(
                404,
                "ResourceNotFound",
                &format!("The resource at {path} was not found."),
            )
        });
    respond(&shared.base, &reply)
}

fn invalid_client(description: &str) -> Reply {
    Reply::json(
        401,
        json!({"error": "invalid_client", "error_description": description, "error_codes": [7000215], "trace_id": "trace-7f3a"}),
    )
}

fn token(base: &str, inner: &mut Inner, request: &Recorded) -> Reply {
    let form = request.form();
    let adfs = request.path.eq_ignore_ascii_case("/adfs/oauth2/token");
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Reply::json(400, json!({"error": "unsupported_grant_type"}));
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return Reply::json(
            400,
            json!({"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found."}),
        );
    }
    if form.get("resource").map(String::as_str) != Some(AUDIENCE) {
        return Reply::json(
            400,
            json!({"error": "invalid_resource", "error_description": "AADSTS500011: The resource principal was not found."}),
        );
    }
    let identity = inner.identity.clone();
    if let Some(secret) = form.get("client_secret") {
        if identity.secret.as_deref() != Some(secret.as_str()) {
            return invalid_client(
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            );
        }
    } else if let Some(assertion) = form.get("client_assertion") {
        let check = check_assertion(
            assertion,
            &identity,
            &format!("{base}{}", request.path),
            adfs,
        );
        let ok = check.thumbprint_matches && check.signature_valid && check.claims_valid;
        inner.assertions.push(check);
        if !ok {
            return invalid_client("AADSTS700027: Client assertion contains an invalid signature.");
        }
    } else {
        return invalid_client("AADSTS7000216: 'client_assertion' or 'client_secret' is required.");
    }
    inner.minted += 1;
    let token = format!("token-{}", inner.minted);
    inner.issued.push(token.clone());
    let expires_in = inner.expires_in.clone().unwrap_or_else(|| json!("3600"));
    Reply::json(
        200,
        json!({"token_type": "Bearer", "expires_in": expires_in, "resource": AUDIENCE, "access_token": token}),
    )
}

fn b64_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

fn check_assertion(
    assertion: &str,
    identity: &Identity,
    audience: &str,
    adfs: bool,
) -> AssertionCheck {
    let parts: Vec<&str> = assertion.split('.').collect();
    let mut check = AssertionCheck {
        alg: String::new(),
        thumbprint_header: String::new(),
        thumbprint_matches: false,
        signature_valid: false,
        claims_valid: false,
    };
    if parts.len() != 3 {
        return check;
    }
    let (Some(header), Some(claims)) = (b64_json(parts[0]), b64_json(parts[1])) else {
        return check;
    };
    check.alg = header["alg"].as_str().unwrap_or_default().to_owned();
    let cert = identity.cert_der.clone().unwrap_or_default();
    let (thumbprint_header, expected, algorithm): (
        &str,
        Vec<u8>,
        &dyn aws_lc_rs::signature::VerificationAlgorithm,
    ) = if adfs {
        (
            "x5t",
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert)
                .as_ref()
                .to_vec(),
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        )
    } else {
        (
            "x5t#S256",
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert)
                .as_ref()
                .to_vec(),
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        )
    };
    let expected_alg = if adfs { "RS256" } else { "PS256" };
    if let Some(value) = header.get(thumbprint_header).and_then(Value::as_str) {
        check.thumbprint_header = thumbprint_header.to_owned();
        check.thumbprint_matches =
            !cert.is_empty() && URL_SAFE_NO_PAD.decode(value).ok() == Some(expected);
    }
    if check.alg == expected_alg
        && let (Some(key), Ok(signature)) = (&identity.public_key, URL_SAFE_NO_PAD.decode(parts[2]))
    {
        let message = format!("{}.{}", parts[0], parts[1]);
        check.signature_valid = aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, key)
            .verify(message.as_bytes(), &signature)
            .is_ok();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    check.claims_valid = claims["aud"].as_str() == Some(audience)
        && claims["iss"].as_str() == Some(CLIENT_ID)
        && claims["sub"].as_str() == Some(CLIENT_ID)
        && claims["exp"].as_u64().is_some_and(|exp| exp > now)
        && claims["nbf"].as_u64().is_some_and(|nbf| nbf <= now)
        && claims["jti"].as_str().is_some_and(|jti| !jti.is_empty());
    check
}
