//! The identity endpoints: AAD v1 / v2 and ADFS token endpoints, OpenID
//! discovery documents, and the bearer check of ARM calls.

use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ArmApp;
use super::error::ArmError;
use crate::sim::util::{b64url, b64url_decode, new_uuid, rfc3339, sha1, sha256, unix_seconds};
use crate::sim::world::IssuedToken;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Which token endpoint was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    AadV1,
    AadV2,
    Adfs,
}

/// A token-endpoint error in the identity provider's own shape.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
    flavor: Flavor,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = match self.flavor {
            Flavor::Adfs => json!({
                "error": self.error,
                "error_description": format!("MSIS{}: {}", self.code, self.description),
            }),
            Flavor::AadV1 | Flavor::AadV2 => {
                let now = SystemTime::now();
                let trace = new_uuid();
                let correlation = new_uuid();
                let stamp = rfc3339(now).replace('T', " ");
                json!({
                    "error": self.error,
                    "error_description": format!(
                        "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {stamp}",
                        self.code, self.description
                    ),
                    "error_codes": [self.code],
                    "timestamp": stamp,
                    "trace_id": trace,
                    "correlation_id": correlation,
                    "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
                })
            }
        };
        (self.status, axum::Json(body)).into_response()
    }
}

fn oauth_error(
    flavor: Flavor,
    status: StatusCode,
    error: &'static str,
    aad: u32,
    adfs: u32,
    description: impl Into<String>,
) -> Response {
    OAuthError {
        status,
        error,
        code: if flavor == Flavor::Adfs { adfs } else { aad },
        description: description.into(),
        flavor,
    }
    .into_response()
}

/// `POST /{tenant}/oauth2/token`, `/{tenant}/oauth2/v2.0/token`, `/adfs/oauth2/token`.
pub fn token(
    app: &ArmApp,
    flavor: Flavor,
    tenant: &str,
    endpoint_path: &str,
    body: &[u8],
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (tenant_id, client_id, secret, public_key, certificate_der, audience) = {
        let state = app.world.lock();
        let identity = &state.identity;
        (
            identity.tenant_id.clone(),
            identity.client_id.clone(),
            identity.client_secret.clone(),
            identity.public_key_der.clone(),
            identity.certificate_der.clone(),
            identity.audience.clone(),
        )
    };
    if flavor != Flavor::Adfs && !tenant.eq_ignore_ascii_case(&tenant_id) {
        return oauth_error(
            flavor,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            0,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    if field("grant_type") != Some("client_credentials") {
        return oauth_error(
            flavor,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            9611,
            format!(
                "The app requested an unsupported grant type '{}'. The simulator issues client_credentials tokens only.",
                field("grant_type").unwrap_or_default()
            ),
        );
    }
    let requested_client = field("client_id").unwrap_or_default();
    if !requested_client.eq_ignore_ascii_case(&client_id) {
        return oauth_error(
            flavor,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            9607,
            format!(
                "Application with identifier '{requested_client}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        );
    }
    let resource = match flavor {
        Flavor::AadV2 => field("scope").map(|s| s.trim().trim_end_matches("/.default").to_owned()),
        Flavor::AadV1 | Flavor::Adfs => field("resource").map(str::to_owned),
    };
    let resource_ok = resource.as_deref().is_some_and(|r| {
        r.trim_end_matches('/')
            .eq_ignore_ascii_case(audience.trim_end_matches('/'))
    });
    if !resource_ok {
        let requested = resource.unwrap_or_default();
        return match flavor {
            Flavor::AadV2 => oauth_error(
                flavor,
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                0,
                format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' ('{requested}/.default') is not valid. The scope must be '{audience}/.default'."
                ),
            ),
            _ => oauth_error(
                flavor,
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                500011,
                9602,
                format!(
                    "The resource principal named {requested} was not found in the tenant named {tenant}. The token audience of this stamp is {audience}."
                ),
            ),
        };
    }
    if let Some(given) = field("client_secret") {
        if given != secret {
            return oauth_error(
                flavor,
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                9622,
                match flavor {
                    Flavor::Adfs => "Client authentication failed. Please verify the credential provided for client authentication is valid.".to_owned(),
                    _ => format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
                },
            );
        }
    } else if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type") != Some(ASSERTION_TYPE) {
            return oauth_error(
                flavor,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                7000218,
                9612,
                format!("The 'client_assertion_type' must be '{ASSERTION_TYPE}'."),
            );
        }
        let endpoint = format!("{}{}", app.base, endpoint_path);
        if let Err((code, adfs_code, message)) = verify_assertion(
            flavor,
            assertion,
            &client_id,
            &endpoint,
            &certificate_der,
            &public_key,
        ) {
            return oauth_error(
                flavor,
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                code,
                adfs_code,
                message,
            );
        }
    } else {
        return oauth_error(
            flavor,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            9622,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }

    let issued = SystemTime::now();
    // Whole seconds, at least one: `expires_in` is an integer on the wire.
    let lifetime = Duration::from_secs(app.world.lock().token_lifetime.as_secs().max(1));
    let token = make_token(
        &audience, &tenant_id, &client_id, issued, &app.base, lifetime,
    );
    app.world.lock().tokens.insert(
        token.clone(),
        IssuedToken {
            client_id: client_id.clone(),
            expires: Instant::now() + lifetime,
        },
    );
    let expires_in = lifetime.as_secs();
    let expires_on = unix_seconds(issued) + expires_in;
    let body = match flavor {
        Flavor::AadV2 => json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }),
        Flavor::AadV1 => json!({
            "token_type": "Bearer",
            "expires_in": expires_in.to_string(),
            "ext_expires_in": expires_in.to_string(),
            "expires_on": expires_on.to_string(),
            "not_before": unix_seconds(issued).to_string(),
            "resource": audience,
            "access_token": token,
        }),
        Flavor::Adfs => json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in.to_string(),
            "resource": audience,
        }),
    };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        "cache-control",
        "no-store, no-cache".parse().expect("valid"),
    );
    response
        .headers_mut()
        .insert("pragma", "no-cache".parse().expect("valid"));
    response
}

fn make_token(
    audience: &str,
    tenant: &str,
    client_id: &str,
    issued: SystemTime,
    base: &str,
    lifetime: Duration,
) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "aksup-simulator"});
    let iat = unix_seconds(issued);
    let claims = json!({
        "aud": audience,
        "iss": format!("{base}/{tenant}/"),
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime.as_secs(),
        "appid": client_id,
        "tid": tenant,
        "oid": crate::sim::util::uuid_from(client_id),
        "uti": new_uuid(),
        "ver": "1.0",
    });
    let signature: Vec<u8> = sha256(new_uuid().as_bytes());
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(&signature)
    )
}

/// Checks a client assertion (RFC 7523). Err: (AADSTS code, MSIS code, message).
fn verify_assertion(
    flavor: Flavor,
    assertion: &str,
    client_id: &str,
    endpoint: &str,
    certificate_der: &[u8],
    public_key: &[u8],
) -> Result<(), (u32, u32, String)> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let malformed = || {
        (
            50027,
            9614,
            "The client assertion is not a well-formed JWT (header.payload.signature).".to_owned(),
        )
    };
    if parts.len() != 3 {
        return Err(malformed());
    }
    let header: Value = b64url_decode(parts[0])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let claims: Value = b64url_decode(parts[1])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let signature = b64url_decode(parts[2]).ok_or_else(malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sha1_thumbprint = b64url(&sha1(certificate_der));
    let sha256_thumbprint = b64url(&sha256(certificate_der));
    let x5t = header.get("x5t").and_then(Value::as_str);
    let x5t_s256 = header.get("x5t#S256").and_then(Value::as_str);
    let unregistered = |kind: &str| {
        (
            700027,
            9622,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{kind}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
            ),
        )
    };
    let algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = match (flavor, alg) {
        (Flavor::Adfs, "RS256") => {
            if x5t.map(|t| t.trim_end_matches('=')) != Some(sha1_thumbprint.as_str()) {
                return Err(unregistered(x5t.unwrap_or("none")));
            }
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256
        }
        (Flavor::Adfs, other) => {
            return Err((
                0,
                9656,
                format!(
                    "The client assertion uses the algorithm '{other}'; AD FS accepts RS256 with an 'x5t' (SHA-1) thumbprint."
                ),
            ));
        }
        (_, "PS256") => {
            if x5t_s256.map(|t| t.trim_end_matches('=')) != Some(sha256_thumbprint.as_str()) {
                return Err(unregistered(x5t_s256.unwrap_or("none")));
            }
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256
        }
        (_, "RS256") => {
            let matches = x5t.map(|t| t.trim_end_matches('=')) == Some(sha1_thumbprint.as_str())
                || x5t_s256.map(|t| t.trim_end_matches('=')) == Some(sha256_thumbprint.as_str());
            if !matches {
                return Err(unregistered(x5t.or(x5t_s256).unwrap_or("none")));
            }
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256
        }
        (_, other) => {
            return Err((
                5002738,
                0,
                format!(
                    "The client assertion uses the unsupported algorithm '{other}'; use PS256 with 'x5t#S256' (or RS256)."
                ),
            ));
        }
    };
    let signed = format!("{}.{}", parts[0], parts[1]);
    aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| {
            (
                700027,
                9622,
                "Client assertion failed signature validation.".to_owned(),
            )
        })?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if !text("iss").eq_ignore_ascii_case(client_id) || !text("sub").eq_ignore_ascii_case(client_id)
    {
        return Err((
            700021,
            9622,
            format!(
                "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials (iss '{}', sub '{}').",
                text("iss"),
                text("sub")
            ),
        ));
    }
    let aud = text("aud");
    let aud_ok = aud
        .trim_end_matches('/')
        .eq_ignore_ascii_case(endpoint.trim_end_matches('/'))
        || aud
            .trim_end_matches('/')
            .eq_ignore_ascii_case(&endpoint.replace("/v2.0/", "/"));
    if !aud_ok {
        return Err((
            700023,
            9622,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials (aud '{aud}', expected '{endpoint}')."
            ),
        ));
    }
    let now = unix_seconds(SystemTime::now());
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    let nbf = claims.get("nbf").and_then(Value::as_u64).unwrap_or(0);
    if exp + 300 < now || nbf > now + 300 {
        return Err((
            700024,
            9622,
            "Client assertion is not within its valid time range.".to_owned(),
        ));
    }
    Ok(())
}

/// Checks the `Authorization: Bearer` header of an ARM call.
pub fn check_bearer(app: &ArmApp, headers: &HeaderMap) -> Result<(), ArmError> {
    let challenge = {
        let state = app.world.lock();
        let authority = if app.identity_system == "adfs" {
            format!("{}/adfs", app.base)
        } else {
            format!("{}/{}", app.base, state.identity.tenant_id)
        };
        format!(
            "Bearer authorization_uri=\"{authority}\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\""
        )
    };
    let unauthorized = |code: &str, message: String| {
        ArmError::new(StatusCode::UNAUTHORIZED, code, message)
            .with_header("www-authenticate", challenge.clone())
    };
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".into(),
        ));
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(unauthorized(
            "AuthenticationFailedInvalidHeader",
            "Authentication failed. The 'Authorization' header is provided in an invalid format."
                .into(),
        ));
    };
    let state = app.world.lock();
    match state.tokens.get(token.trim()) {
        None => Err(unauthorized(
            "InvalidAuthenticationToken",
            "The access token is invalid.".into(),
        )),
        Some(issued) if issued.expires < Instant::now() => Err(unauthorized(
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.".into(),
        )),
        Some(_) => Ok(()),
    }
}

/// `GET /adfs/.well-known/openid-configuration`.
pub fn adfs_openid_configuration(app: &ArmApp) -> Value {
    let base = &app.base;
    json!({
        "issuer": format!("{base}/adfs"),
        "authorization_endpoint": format!("{base}/adfs/oauth2/authorize/"),
        "token_endpoint": format!("{base}/adfs/oauth2/token/"),
        "jwks_uri": format!("{base}/adfs/discovery/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt", "windows_client_authentication"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token", "code token", "code id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer", "implicit", "password", "srv_challenge"],
        "subject_types_supported": ["pairwise"],
        "scopes_supported": ["openid", "profile", "email", "allatclaims", "user_impersonation", "logon_cert", "aza", "vpn_cert", "winhello_cert"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "access_token_issuer": format!("{base}/adfs/services/trust"),
        "claims_supported": ["aud", "iss", "iat", "exp", "auth_time", "nonce", "at_hash", "c_hash", "sub", "upn", "unique_name", "pwd_url", "pwd_exp", "mfa_auth_time", "sid", "nbf"],
    })
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` (and the v1 document without `v2.0`).
pub fn aad_openid_configuration(app: &ArmApp, tenant: &str, v2: bool) -> Value {
    let base = &app.base;
    let (token, issuer) = if v2 {
        (
            format!("{base}/{tenant}/oauth2/v2.0/token"),
            format!("{base}/{tenant}/v2.0"),
        )
    } else {
        (
            format!("{base}/{tenant}/oauth2/token"),
            format!("{base}/{tenant}/"),
        )
    };
    json!({
        "token_endpoint": token,
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/{tenant}/openid/userinfo"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/{}authorize", if v2 { "v2.0/" } else { "" }),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "tid", "ver"],
        "tenant_region_scope": null,
        "cloud_instance_name": "azurestack.sim",
        "cloud_graph_host_name": "graph.azurestack.sim",
        "msgraph_host": "graph.azurestack.sim",
    })
}

/// `GET /common/discovery/instance` (MSAL's instance discovery).
pub fn instance_discovery(app: &ArmApp, tenant: &str) -> Value {
    let host = app.base.trim_start_matches("https://");
    json!({
        "tenant_discovery_endpoint": format!("{}/{tenant}/v2.0/.well-known/openid-configuration", app.base),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    })
}
