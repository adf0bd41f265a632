//! Credentials: AAD or ADFS × client secret or client certificate, on
//! `azure_core`'s `TokenCredential` trait.
//!
//! Both identity systems are served by the v1 token endpoint with a
//! `resource` (what aks-engine's ADAL does):
//! - AAD: `POST {login}{tenant}/oauth2/token`; a certificate assertion is
//!   PS256 with `x5t#S256`;
//! - ADFS: `POST {login …/adfs}/oauth2/token` (tenant `adfs`); a certificate
//!   assertion is RS256 with `x5t`.
//!
//! Tokens are cached per resource and refreshed before they expire.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self, RsaKeyPair};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{ArmErrorBody, one_line};
use super::http::{Http, RequestBody};
use super::{Error, Result};
use crate::model;

pub use crate::model::Secret;

/// `--identity-system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentitySystem {
    /// `azure_ad`: Azure Active Directory (Microsoft Entra ID).
    AzureAd,
    /// `adfs`: Active Directory Federation Services (disconnected stamps).
    Adfs,
}

impl IdentitySystem {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySystem::AzureAd => "azure_ad",
            IdentitySystem::Adfs => "adfs",
        }
    }
}

impl fmt::Display for IdentitySystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentitySystem {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "azure_ad" | "azuread" | "aad" => Ok(IdentitySystem::AzureAd),
            "adfs" => Ok(IdentitySystem::Adfs),
            _ => Err(Error::Config(format!(
                "unknown identity system {text:?}: use azure_ad or adfs"
            ))),
        }
    }
}

/// `--auth-method` with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// `client_secret`.
    ClientSecret(Secret),
    /// `client_certificate`: a PEM certificate and its RSA private key (may be the same file).
    ClientCertificate {
        certificate_path: PathBuf,
        private_key_path: PathBuf,
    },
}

impl AuthMethod {
    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::ClientSecret(_) => "client_secret",
            AuthMethod::ClientCertificate { .. } => "client_certificate",
        }
    }
}

/// A complete, validated credential configuration. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialConfig {
    pub identity_system: IdentitySystem,
    /// The service principal's application (client) id, a UUID.
    pub client_id: String,
    /// The AAD tenant; `None` = discover it from the ARM 401 challenge. Ignored for ADFS (`adfs`).
    pub tenant_id: Option<String>,
    pub auth: AuthMethod,
}

/// Credential settings as the command line gives them; every field may also
/// come from the environment (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
/// `AZURE_TENANT_ID`, `AZURE_CLIENT_CERTIFICATE_PATH`) so secrets need not
/// appear in a process list.
#[derive(Debug, Clone, Default)]
pub struct CredentialOptions {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub certificate_path: Option<PathBuf>,
    pub private_key_path: Option<PathBuf>,
    /// `azure_ad` | `adfs`; default from the apimodel, else `azure_ad`.
    pub identity_system: Option<String>,
    /// `client_secret` | `client_certificate`; default from what is given, else the apimodel.
    pub auth_method: Option<String>,
    pub tenant_id: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl CredentialOptions {
    /// Resolves flags, then environment variables (read through `env`), then
    /// the apimodel's `customCloudProfile` into a [`CredentialConfig`].
    pub fn resolve(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        custom: Option<&model::CustomCloudProfile>,
    ) -> Result<CredentialConfig> {
        let client_id = non_empty(self.client_id)
            .or_else(|| non_empty(env("AZURE_CLIENT_ID")))
            .ok_or_else(|| {
                Error::Config(
                    "no client id: pass --client-id or set AZURE_CLIENT_ID to the service principal's application id".into(),
                )
            })?;
        validate_client_id(&client_id)?;
        let identity_system = match non_empty(self.identity_system) {
            Some(text) => text.parse()?,
            None => match custom
                .map(|c| c.identity_system.trim())
                .filter(|s| !s.is_empty())
            {
                Some(text) => text.parse()?,
                None => IdentitySystem::AzureAd,
            },
        };
        let secret = self
            .client_secret
            .filter(|s| !s.is_empty())
            .or_else(|| non_empty(env("AZURE_CLIENT_SECRET")).map(Secret::new));
        let certificate_path = self
            .certificate_path
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| non_empty(env("AZURE_CLIENT_CERTIFICATE_PATH")).map(PathBuf::from));
        let method = match non_empty(self.auth_method) {
            Some(text) => text.to_ascii_lowercase(),
            None => match (&secret, &certificate_path) {
                (Some(_), None) => "client_secret".to_owned(),
                (None, Some(_)) => "client_certificate".to_owned(),
                _ => custom
                    .map(|c| c.authentication_method.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "client_secret".to_owned()),
            },
        };
        let auth = match method.as_str() {
            "client_secret" => AuthMethod::ClientSecret(secret.ok_or_else(|| {
                Error::Config(
                    "auth method client_secret needs a secret: set AZURE_CLIENT_SECRET (preferred: it stays out of the process list) or pass --client-secret".into(),
                )
            })?),
            "client_certificate" => {
                let certificate_path = certificate_path.ok_or_else(|| {
                    Error::Config(
                        "auth method client_certificate needs --certificate-path (or AZURE_CLIENT_CERTIFICATE_PATH), a PEM file with the certificate".into(),
                    )
                })?;
                let private_key_path = self
                    .private_key_path
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or_else(|| certificate_path.clone());
                AuthMethod::ClientCertificate {
                    certificate_path,
                    private_key_path,
                }
            }
            other => {
                return Err(Error::Config(format!(
                    "unknown auth method {other:?}: use client_secret or client_certificate"
                )));
            }
        };
        let tenant_id = non_empty(self.tenant_id).or_else(|| non_empty(env("AZURE_TENANT_ID")));
        if let Some(tenant) = &tenant_id
            && !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(Error::Config(format!(
                "tenant id {tenant:?} is not valid: use the directory's GUID or domain name"
            )));
        }
        Ok(CredentialConfig {
            identity_system,
            client_id,
            tenant_id: match identity_system {
                IdentitySystem::Adfs => Some("adfs".to_owned()),
                IdentitySystem::AzureAd => tenant_id,
            },
            auth,
        })
    }

    /// [`CredentialOptions::resolve`] with the process environment.
    pub fn resolve_from_process_env(
        self,
        custom: Option<&model::CustomCloudProfile>,
    ) -> Result<CredentialConfig> {
        self.resolve(&|name| std::env::var(name).ok(), custom)
    }
}

/// aks-engine requires the client id to be a UUID.
fn validate_client_id(client_id: &str) -> Result<()> {
    azure_core::Uuid::parse_str(client_id).map(|_| ()).map_err(|_| {
        Error::Config(format!(
            "client id {client_id:?} is not a UUID: pass the service principal's application (client) id, not its name"
        ))
    })
}

/// The parameters of a `WWW-Authenticate: Bearer k="v", …` challenge, keys lowercased.
pub fn parse_www_authenticate(header: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let text = header.trim();
    let rest = match text.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest,
        _ => return params,
    };
    let mut chars = rest.chars().peekable();
    loop {
        // Skip separators.
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.trim().is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(next) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_owned()
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    params
}

/// The tenant from an `authorization_uri` such as `https://login.windows.net/{tenant}`.
pub fn tenant_from_authorization_uri(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri.trim()).ok()?;
    let tenant = url.path_segments()?.rfind(|segment| !segment.is_empty())?;
    let valid = tenant
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then(|| tenant.to_owned())
}

/// A token for one resource, with when to refresh it.
struct Cached {
    token: AccessToken,
    refresh_at: Instant,
}

enum Signer {
    Secret(Secret),
    Certificate {
        key: RsaKeyPair,
        x5t: String,
        x5t_s256: String,
        key_path: PathBuf,
    },
}

/// The token credential for AAD or ADFS, secret or certificate. Implements
/// `azure_core::credentials::TokenCredential`; a scope `X/.default` asks for
/// a token for resource `X`.
pub struct ArmCredential {
    identity_system: IdentitySystem,
    client_id: String,
    tenant: String,
    token_url: String,
    signer: Signer,
    http: Arc<Http>,
    refresh_margin: Duration,
    cache: Mutex<BTreeMap<String, Cached>>,
}

impl fmt::Debug for ArmCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmCredential")
            .field("identity_system", &self.identity_system)
            .field("client_id", &self.client_id)
            .field("tenant", &self.tenant)
            .field("token_url", &self.token_url)
            .field(
                "auth_method",
                &match self.signer {
                    Signer::Secret(_) => "client_secret",
                    Signer::Certificate { .. } => "client_certificate",
                },
            )
            .finish_non_exhaustive()
    }
}

/// The v1 token endpoint of an identity system.
pub(crate) fn token_url(
    identity_system: IdentitySystem,
    active_directory_endpoint: &str,
    tenant: &str,
) -> String {
    let base = active_directory_endpoint.trim().trim_end_matches('/');
    match identity_system {
        IdentitySystem::Adfs => {
            if base.to_ascii_lowercase().ends_with("/adfs") {
                format!("{base}/oauth2/token")
            } else {
                format!("{base}/adfs/oauth2/token")
            }
        }
        IdentitySystem::AzureAd => format!("{base}/{tenant}/oauth2/token"),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The first certificate (DER) of a PEM file.
pub(crate) fn load_certificate(path: &Path) -> Result<Vec<u8>> {
    let pem = read("the client certificate", path)?;
    let mut reader = pem.as_slice();
    let first = rustls_pemfile::certs(&mut reader).next();
    match first {
        Some(Ok(cert)) => Ok(cert.as_ref().to_vec()),
        Some(Err(error)) => Err(Error::BadPem {
            what: "the client certificate",
            path: path.to_owned(),
            reason: format!("the PEM is malformed ({})", error.kind()),
        }),
        None => Err(Error::BadPem {
            what: "the client certificate",
            path: path.to_owned(),
            reason: "it holds no BEGIN CERTIFICATE block".into(),
        }),
    }
}

/// The RSA private key of a PEM file (PKCS#1 or PKCS#8).
pub(crate) fn load_rsa_key(path: &Path) -> Result<RsaKeyPair> {
    let pem = read("the private key", path)?;
    let mut reader = pem.as_slice();
    let bad = |reason: String| Error::BadPem {
        what: "the private key",
        path: path.to_owned(),
        reason,
    };
    let key = rustls_pemfile::private_key(&mut reader)
        .map_err(|error| bad(format!("the PEM is malformed ({})", error.kind())))?
        .ok_or_else(|| bad("it holds no PRIVATE KEY block".into()))?;
    let parsed = match &key {
        rustls::pki_types::PrivateKeyDer::Pkcs1(der) => {
            RsaKeyPair::from_der(der.secret_pkcs1_der())
        }
        rustls::pki_types::PrivateKeyDer::Pkcs8(der) => {
            RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        }
        _ => {
            return Err(bad(
                "it is not an RSA key; AAD and ADFS client certificates need an RSA key".into(),
            ));
        }
    };
    parsed.map_err(|rejected| {
        bad(format!(
            "it is not a usable RSA key ({rejected}); AAD and ADFS client certificates need an RSA key"
        ))
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ArmCredential {
    /// Builds the credential. `tenant` must be known for AAD (see
    /// [`crate::arm::ArmClient::new`], which discovers it); certificate and
    /// key files are read and checked here.
    pub(crate) fn new(
        config: &CredentialConfig,
        tenant: String,
        active_directory_endpoint: &str,
        http: Arc<Http>,
        refresh_margin: Duration,
    ) -> Result<Self> {
        let signer = match &config.auth {
            AuthMethod::ClientSecret(secret) => Signer::Secret(secret.clone()),
            AuthMethod::ClientCertificate {
                certificate_path,
                private_key_path,
            } => {
                let cert = load_certificate(certificate_path)?;
                let key = load_rsa_key(private_key_path)?;
                let sha1 =
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
                let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert);
                Signer::Certificate {
                    key,
                    x5t: b64(sha1.as_ref()),
                    x5t_s256: b64(sha256.as_ref()),
                    key_path: private_key_path.clone(),
                }
            }
        };
        let token_url = token_url(config.identity_system, active_directory_endpoint, &tenant);
        Ok(Self {
            identity_system: config.identity_system,
            client_id: config.client_id.clone(),
            tenant,
            token_url,
            signer,
            http,
            refresh_margin,
            cache: Mutex::new(BTreeMap::new()),
        })
    }

    /// The token endpoint this credential posts to.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The tenant (`adfs` for ADFS).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// A token for `resource` (the environment's audience), from the cache
    /// unless it is due for refresh.
    pub async fn token_for(&self, resource: &str) -> Result<AccessToken> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get(resource)
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = self.request_token(resource).await?;
        // Refresh `refresh_margin` before expiry, but never later than half-way
        // through a short-lived token.
        let margin = self.refresh_margin.min(lifetime / 2);
        let refresh_at = Instant::now() + lifetime.saturating_sub(margin);
        cache.insert(
            resource.to_owned(),
            Cached {
                token: token.clone(),
                refresh_at,
            },
        );
        Ok(token)
    }

    /// Forgets every cached token (after ARM refused one).
    pub async fn clear_cache(&self) {
        self.cache.lock().await.clear();
    }

    fn assertion(&self) -> Result<Option<String>> {
        let Signer::Certificate {
            key,
            x5t,
            x5t_s256,
            key_path,
        } = &self.signer
        else {
            return Ok(None);
        };
        let (header, algorithm): (Value, &'static dyn signature::RsaEncoding) =
            match self.identity_system {
                IdentitySystem::AzureAd => (
                    json!({"alg": "PS256", "typ": "JWT", "x5t#S256": x5t_s256}),
                    &signature::RSA_PSS_SHA256,
                ),
                IdentitySystem::Adfs => (
                    json!({"alg": "RS256", "typ": "JWT", "x5t": x5t}),
                    &signature::RSA_PKCS1_SHA256,
                ),
            };
        let now = unix_now();
        let jti: [u8; 16] = rand::random();
        let claims = json!({
            "aud": self.token_url,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "nbf": now.saturating_sub(60),
            "iat": now,
            "exp": now + 600,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut signature = vec![0u8; key.public_modulus_len()];
        key.sign(
            algorithm,
            &aws_lc_rs::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| Error::Sign {
            path: key_path.clone(),
            reason: "the RSA signature failed".into(),
        })?;
        Ok(Some(format!("{signing_input}.{}", b64(&signature))))
    }

    async fn request_token(&self, resource: &str) -> Result<(AccessToken, Duration)> {
        let doing = format!(
            "getting a token from {} ({}, {})",
            self.token_url,
            self.identity_system,
            match self.signer {
                Signer::Secret(_) => "client_secret",
                Signer::Certificate { .. } => "client_certificate",
            }
        );
        let reply = self
            .http
            .execute(&doing, || async {
                let mut form: Vec<(&str, String)> = vec![
                    ("grant_type", "client_credentials".to_owned()),
                    ("client_id", self.client_id.clone()),
                    ("resource", resource.to_owned()),
                ];
                match &self.signer {
                    Signer::Secret(secret) => {
                        form.push(("client_secret", secret.expose().to_owned()))
                    }
                    Signer::Certificate { .. } => {
                        form.push((
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                        ));
                        form.push(("client_assertion", self.assertion()?.unwrap_or_default()));
                    }
                }
                Ok((
                    reqwest::Method::POST,
                    self.token_url.clone(),
                    None,
                    RequestBody::Form(form),
                ))
            })
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(self.refusal(&doing, &reply));
        }
        let value: Value = reply.json(&doing)?;
        let token = value
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Config(format!("{doing}: the answer has no access_token")))?
            .to_owned();
        let lifetime = seconds_field(value.get("expires_in"))
            .or_else(|| {
                seconds_field(value.get("expires_on")).map(|on| on.saturating_sub(unix_now()))
            })
            .unwrap_or(300);
        let lifetime = Duration::from_secs(lifetime);
        let expires_on = azure_core::time::OffsetDateTime::now_utc() + lifetime;
        Ok((AccessToken::new(token, expires_on), lifetime))
    }

    fn refusal(&self, doing: &str, reply: &super::http::Reply) -> Error {
        let body = ArmErrorBody::parse(&reply.body);
        let trace = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("trace_id").and_then(Value::as_str).map(str::to_owned));
        let request_id = reply.request_id().or(trace);
        let (code, message) = match body {
            Some(body) => (body.code, self.scrub(&one_line(&body.message))),
            None => (
                format!("HTTP{}", reply.status),
                format!("HTTP status {}", reply.status),
            ),
        };
        if (400..500).contains(&reply.status) {
            Error::Auth {
                doing: doing.to_owned(),
                code,
                message,
                request_id,
                hint: match self.signer {
                    Signer::Secret(_) => {
                        "check the client id and the client secret (AZURE_CLIENT_SECRET or --client-secret), and that the identity system matches the stamp"
                    }
                    Signer::Certificate { .. } => {
                        "check that the certificate (--certificate-path or AZURE_CLIENT_CERTIFICATE_PATH) is the one registered for the service principal and matches its private key"
                    }
                },
            }
        } else {
            Error::Arm {
                doing: doing.to_owned(),
                status: reply.status,
                code,
                message,
                request_id,
            }
        }
    }

    /// Removes the secret from server-provided text, should a server echo it.
    fn scrub(&self, text: &str) -> String {
        match &self.signer {
            Signer::Secret(secret) if !secret.is_empty() => {
                text.replace(secret.expose(), "<redacted>")
            }
            _ => text.to_owned(),
        }
    }
}

/// `expires_in` / `expires_on`: a number or a string of digits.
fn seconds_field(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// The resource of a scope: `https://x/.default` → `https://x/`; other scopes as they are.
pub(crate) fn resource_of_scope(scope: &str) -> String {
    match scope.strip_suffix(".default") {
        Some(resource) if resource.ends_with('/') => {
            // Keep the audience exactly as configured when it had no trailing slash.
            resource.to_owned()
        }
        _ => scope.to_owned(),
    }
}

/// The scope for a resource (the inverse of [`resource_of_scope`]).
pub(crate) fn scope_of_resource(resource: &str) -> String {
    if resource.ends_with('/') {
        format!("{resource}.default")
    } else {
        format!("{resource}/.default")
    }
}

#[async_trait::async_trait]
impl TokenCredential for ArmCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let scope = scopes.first().ok_or_else(|| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "no scope given",
            )
        })?;
        let mut resource = resource_of_scope(scope);
        // `scope_of_resource` added a slash the configured audience did not have.
        if let Some(stripped) = scope.strip_suffix("/.default")
            && !stripped.ends_with('/')
        {
            resource = stripped.to_owned();
        }
        self.token_for(&resource).await.map_err(|error| {
            azure_core::Error::new(azure_core::error::ErrorKind::Credential, error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "0b7e5a6c-96d9-4b7e-9b3a-2f5e8e4f1a11";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn www_authenticate_challenge_is_parsed() {
        let header = r#"Bearer authorization_uri="https://login.windows.net/8a3d2c55-7a1f-4e6b-9f0e-1234567890ab", error="invalid_token", error_description="The authentication failed because of missing 'Authorization' header.""#;
        let params = parse_www_authenticate(header);
        assert_eq!(
            params.get("error").map(String::as_str),
            Some("invalid_token")
        );
        let uri = params.get("authorization_uri").expect("uri");
        assert_eq!(
            tenant_from_authorization_uri(uri).as_deref(),
            Some("8a3d2c55-7a1f-4e6b-9f0e-1234567890ab")
        );
        assert!(parse_www_authenticate("Basic realm=\"x\"").is_empty());
        let unquoted = parse_www_authenticate(
            "Bearer authorization_uri=https://login.example/contoso.onmicrosoft.com/, resource_id=x",
        );
        assert_eq!(
            tenant_from_authorization_uri(&unquoted["authorization_uri"]).as_deref(),
            Some("contoso.onmicrosoft.com")
        );
        assert_eq!(
            tenant_from_authorization_uri("https://login.example/"),
            None
        );
        assert_eq!(
            tenant_from_authorization_uri("https://login.example/a%20b"),
            None
        );
    }

    #[test]
    fn token_urls_follow_the_identity_system() {
        assert_eq!(
            token_url(
                IdentitySystem::AzureAd,
                "https://login.microsoftonline.com/",
                "t1"
            ),
            "https://login.microsoftonline.com/t1/oauth2/token"
        );
        assert_eq!(
            token_url(
                IdentitySystem::Adfs,
                "https://adfs.local.azurestack.external/adfs/",
                "adfs"
            ),
            "https://adfs.local.azurestack.external/adfs/oauth2/token"
        );
        assert_eq!(
            token_url(
                IdentitySystem::Adfs,
                "https://adfs.local.azurestack.external",
                "adfs"
            ),
            "https://adfs.local.azurestack.external/adfs/oauth2/token"
        );
    }

    #[test]
    fn options_resolve_flags_then_environment_then_model() {
        let env = env_of(&[
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_CLIENT_SECRET", "from-env"),
            ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
        ]);
        let config = CredentialOptions::default()
            .resolve(&env, None)
            .expect("config");
        assert_eq!(config.client_id, CLIENT);
        assert_eq!(config.identity_system, IdentitySystem::AzureAd);
        assert_eq!(config.tenant_id.as_deref(), Some("contoso.onmicrosoft.com"));
        assert_eq!(
            config.auth,
            AuthMethod::ClientSecret(Secret::new("from-env"))
        );
        assert!(!format!("{config:?}").contains("from-env"));

        // Flags win over the environment.
        let config = CredentialOptions {
            client_secret: Some(Secret::new("from-flag")),
            ..Default::default()
        }
        .resolve(&env, None)
        .expect("config");
        assert_eq!(
            config.auth,
            AuthMethod::ClientSecret(Secret::new("from-flag"))
        );

        // The apimodel picks ADFS + certificate; the tenant becomes adfs.
        let custom = model::CustomCloudProfile {
            identity_system: "adfs".into(),
            authentication_method: "client_certificate".into(),
            ..Default::default()
        };
        let env = env_of(&[
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/certs/sp.pem"),
        ]);
        let config = CredentialOptions::default()
            .resolve(&env, Some(&custom))
            .expect("config");
        assert_eq!(config.identity_system, IdentitySystem::Adfs);
        assert_eq!(config.tenant_id.as_deref(), Some("adfs"));
        assert_eq!(
            config.auth,
            AuthMethod::ClientCertificate {
                certificate_path: "/certs/sp.pem".into(),
                private_key_path: "/certs/sp.pem".into()
            }
        );
    }

    #[test]
    fn options_report_what_is_missing_or_wrong() {
        let none = env_of(&[]);
        let error = CredentialOptions::default()
            .resolve(&none, None)
            .unwrap_err();
        assert!(error.to_string().contains("AZURE_CLIENT_ID"));
        let error = CredentialOptions {
            client_id: Some("my-app".into()),
            ..Default::default()
        }
        .resolve(&none, None)
        .unwrap_err();
        assert!(error.to_string().contains("not a UUID"), "{error}");
        let error = CredentialOptions {
            client_id: Some(CLIENT.into()),
            ..Default::default()
        }
        .resolve(&none, None)
        .unwrap_err();
        assert!(error.to_string().contains("AZURE_CLIENT_SECRET"), "{error}");
        let error = CredentialOptions {
            client_id: Some(CLIENT.into()),
            auth_method: Some("client_certificate".into()),
            ..Default::default()
        }
        .resolve(&none, None)
        .unwrap_err();
        assert!(error.to_string().contains("--certificate-path"), "{error}");
        let error = CredentialOptions {
            client_id: Some(CLIENT.into()),
            identity_system: Some("kerberos".into()),
            ..Default::default()
        }
        .resolve(&none, None)
        .unwrap_err();
        assert!(error.to_string().contains("azure_ad or adfs"), "{error}");
    }

    #[test]
    fn expires_in_is_a_number_or_a_string() {
        assert_eq!(seconds_field(Some(&json!("3599"))), Some(3599));
        assert_eq!(seconds_field(Some(&json!(3599))), Some(3599));
        assert_eq!(seconds_field(Some(&json!("soon"))), None);
        assert_eq!(seconds_field(None), None);
    }

    #[test]
    fn scopes_map_to_resources() {
        assert_eq!(
            resource_of_scope("https://management.azure.com/.default"),
            "https://management.azure.com/"
        );
        assert_eq!(
            scope_of_resource("https://management.azure.com/"),
            "https://management.azure.com/.default"
        );
        assert_eq!(
            scope_of_resource("https://aud/guid"),
            "https://aud/guid/.default"
        );
    }

    #[test]
    fn certificate_and_key_files_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ec = rcgen::KeyPair::generate().expect("ec key");
        let ec_path = dir.path().join("ec.pem");
        std::fs::write(&ec_path, ec.serialize_pem()).expect("write");
        let error = load_rsa_key(&ec_path).expect_err("refused");
        assert!(error.to_string().contains("need an RSA key"), "{error}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").expect("write");
        assert!(
            load_rsa_key(&garbage)
                .expect_err("refused")
                .to_string()
                .contains("no PRIVATE KEY")
        );
        assert!(
            load_certificate(&garbage)
                .expect_err("refused")
                .to_string()
                .contains("no BEGIN CERTIFICATE")
        );
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            load_certificate(&missing),
            Err(Error::ReadFile { .. })
        ));

        let rsa =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("rsa");
        let rsa_path = dir.path().join("rsa.pem");
        std::fs::write(&rsa_path, rsa.serialize_pem()).expect("write");
        assert!(load_rsa_key(&rsa_path).is_ok());
        // The key's text never shows up in an error about it.
        let error = load_certificate(&rsa_path).expect_err("no cert");
        assert!(!error.to_string().contains("PRIVATE"), "{error}");
    }
}
