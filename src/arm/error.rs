//! Errors of the ARM client and the parsing of ARM error bodies.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// Why a request never got an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The TCP connection could not be made (or was refused).
    Connect,
    /// The connection was reset or closed while the request or the answer was in flight.
    Reset,
    /// The connect or request timeout elapsed.
    Timeout,
    /// The server's TLS certificate is not trusted or does not match.
    Tls,
    /// Anything else (a malformed URL, a redirect refused, ...).
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "cannot connect",
            TransportKind::Reset => "the connection was reset",
            TransportKind::Timeout => "the request timed out",
            TransportKind::Tls => {
                "the server's TLS certificate is not trusted (pass the stamp's root CA with --ca-file or SSL_CERT_FILE)"
            }
            TransportKind::Other => "the request could not be sent",
        })
    }
}

/// Errors of the ARM client. Every variant says what aksup was doing; none
/// carries a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ARM (or the token endpoint) answered with an error status.
    #[error("{doing}: {status} {code}: {message}{}", request_suffix(request_id))]
    Arm {
        doing: String,
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// The token endpoint refused the credentials.
    #[error(
        "{doing}: the identity provider refused the credentials: {code}: {message}{}; {hint}",
        request_suffix(request_id)
    )]
    Auth {
        doing: String,
        code: String,
        message: String,
        request_id: Option<String>,
        hint: &'static str,
    },
    /// No HTTP answer at all.
    #[error("{doing}: {kind} ({url})")]
    Transport {
        doing: String,
        url: String,
        kind: TransportKind,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not the JSON we expected.
    #[error("{doing}: the answer from {url} is not the expected JSON")]
    Decode {
        doing: String,
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// A long-running operation ended in `Failed` or `Canceled`.
    #[error(
        "{doing}: the operation ended {status}: {code}: {message}{}",
        request_suffix(request_id)
    )]
    OperationFailed {
        doing: String,
        status: String,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// A template deployment failed; `summary` names the failing resource and the innermost error.
    #[error("deployment {deployment} in resource group {resource_group} failed: {summary}")]
    DeploymentFailed {
        deployment: String,
        resource_group: String,
        code: String,
        summary: String,
    },
    /// The caller's deadline passed before the operation finished.
    #[error("{doing}: still not finished after {}s; the operation may still complete in Azure, re-run to continue", waited.as_secs())]
    Deadline { doing: String, waited: Duration },
    /// The caller cancelled the wait.
    #[error("{doing}: cancelled; the operation may still complete in Azure")]
    Cancelled { doing: String },
    /// The configuration is incomplete or wrong (a flag, an environment variable, the apimodel).
    #[error("{0}")]
    Config(String),
    /// A file named by the configuration cannot be read.
    #[error("cannot read {what} {path}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file is not usable.
    #[error("{what} {path} is not usable: {reason}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Signing the client assertion failed.
    #[error("cannot sign the client assertion with the private key {path}: {reason}")]
    Sign { path: PathBuf, reason: String },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTPS client: {0}")]
    HttpClient(String),
}

fn request_suffix(request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!(" (request id {id})"),
        None => String::new(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status ARM answered with, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Arm { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The ARM (or AAD) error code, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Arm { code, .. }
            | Error::Auth { code, .. }
            | Error::OperationFailed { code, .. }
            | Error::DeploymentFailed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The `x-ms-request-id` (or AAD trace id) of the failing answer.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Arm { request_id, .. }
            | Error::Auth { request_id, .. }
            | Error::OperationFailed { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// True for a 404 answer.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when a later attempt may succeed, decided by [`crate::arm::RetryPolicy`]'s
    /// rules (status and error code, never message text).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Arm { status, code, .. } => {
                crate::arm::retry::is_retryable_status(*status, Some(code))
            }
            Error::Transport { kind, .. } => crate::arm::retry::is_retryable_transport(*kind),
            _ => false,
        }
    }
}

/// An ARM error body: `{"error":{"code","message","target"?,"details"?:[…]}}`.
/// Unknown fields are ignored; every field is optional on the wire.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ArmErrorBody {
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<ArmErrorBody>,
}

#[derive(Deserialize)]
struct Envelope {
    error: ArmErrorBody,
}

impl ArmErrorBody {
    /// Parses an ARM error answer. Accepts the `{"error":{…}}` envelope, a bare
    /// `{"code","message"}` object, and a JSON string holding either of those.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(body).ok()?;
        Self::from_value(&value)
    }

    /// Like [`ArmErrorBody::parse`] from an already parsed value.
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(text) => Self::parse(text.as_bytes()),
            Value::Object(map) => {
                if let Some(error) = map.get("error") {
                    if let Ok(envelope) = serde_json::from_value::<Envelope>(
                        serde_json::json!({ "error": error.clone() }),
                    ) {
                        return Some(envelope.error);
                    }
                    if let Value::String(text) = error {
                        // OAuth shape: {"error":"invalid_client","error_description":"…"}
                        let message = map
                            .get("error_description")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        return Some(ArmErrorBody {
                            code: text.clone(),
                            message: message.to_owned(),
                            ..Default::default()
                        });
                    }
                }
                if map.contains_key("code") {
                    return serde_json::from_value(value.clone()).ok();
                }
                None
            }
            _ => None,
        }
    }
}

/// The innermost error of a (possibly nested) ARM error: follows `details`
/// and messages that are themselves JSON error documents, as deployments
/// report them. Returns `(code, message)`.
pub fn innermost_error(error: &ArmErrorBody) -> (String, String) {
    innermost_at(error, 0)
}

fn innermost_at(error: &ArmErrorBody, depth: usize) -> (String, String) {
    if depth > 16 {
        return (error.code.clone(), one_line(&error.message));
    }
    // A message that is a JSON document (an error, or a `{"status","error"}` object).
    if let Some(nested) = nested_in_message(&error.message) {
        return innermost_at(&nested, depth + 1);
    }
    if let Some(detail) = error
        .details
        .iter()
        .find(|d| !d.code.is_empty() || !d.message.is_empty())
    {
        return innermost_at(detail, depth + 1);
    }
    (error.code.clone(), one_line(&error.message))
}

fn nested_in_message(message: &str) -> Option<ArmErrorBody> {
    let trimmed = message.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    let value: Value = serde_json::from_str(trimmed).ok()?;
    let nested = ArmErrorBody::from_value(&value)?;
    if nested.code.is_empty() && nested.message.is_empty() && nested.details.is_empty() {
        return None;
    }
    Some(nested)
}

/// Collapses whitespace (newlines included) so a message fits on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_envelope_and_ignores_unknown_fields() {
        let body = br#"{"error":{"code":"ResourceNotFound","message":"gone","extra":1,"additionalInfo":[]}}"#;
        let error = ArmErrorBody::parse(body).expect("parse");
        assert_eq!(error.code, "ResourceNotFound");
        assert_eq!(error.message, "gone");
        assert!(error.details.is_empty());
    }

    #[test]
    fn parses_the_oauth_shape() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
        let error = ArmErrorBody::parse(body).expect("parse");
        assert_eq!(error.code, "invalid_client");
        assert!(error.message.starts_with("AADSTS7000215"));
    }

    #[test]
    fn non_json_is_none() {
        assert!(ArmErrorBody::parse(b"<html>bad gateway</html>").is_none());
        assert!(ArmErrorBody::parse(b"{\"foo\":1}").is_none());
    }

    #[test]
    fn innermost_follows_details_and_json_strings() {
        let inner = r#"{"status":"Failed","error":{"code":"ResourceDeploymentFailure","message":"outer","details":[{"code":"OSProvisioningTimedOut","message":"OS provisioning\n did not finish"}]}}"#;
        let body = serde_json::json!({
            "error": {
                "code": "DeploymentFailed",
                "message": "At least one resource deployment operation failed.",
                "details": [{ "code": "Conflict", "message": inner }]
            }
        });
        let error = ArmErrorBody::from_value(&body).expect("parse");
        let (code, message) = innermost_error(&error);
        assert_eq!(code, "OSProvisioningTimedOut");
        assert_eq!(message, "OS provisioning did not finish");
    }

    #[test]
    fn innermost_of_a_flat_error_is_itself() {
        let error = ArmErrorBody {
            code: "BadRequest".into(),
            message: "no {json here".into(),
            ..Default::default()
        };
        assert_eq!(
            innermost_error(&error),
            ("BadRequest".to_owned(), "no {json here".to_owned())
        );
    }

    #[test]
    fn display_names_code_message_request_id_and_step() {
        let error = Error::Arm {
            doing: "listing VMs of resource group rg".into(),
            status: 403,
            code: "AuthorizationFailed".into(),
            message: "no access".into(),
            request_id: Some("abc".into()),
        };
        assert_eq!(
            error.to_string(),
            "listing VMs of resource group rg: 403 AuthorizationFailed: no access (request id abc)"
        );
        assert!(!error.is_retryable());
    }
}
