//! ARM error bodies: `{"error":{"code","message","target"?,"details"?}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An ARM error response.
#[derive(Clone, Debug)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<Value>,
    pub retry_after: Option<u64>,
    pub headers: Vec<(&'static str, String)>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            target: None,
            details: Vec::new(),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    #[must_use]
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    #[must_use]
    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }

    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The `error` object.
    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(target) = &self.target {
            error["target"] = json!(target);
        }
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        error
    }

    pub fn not_found(kind: &str, name: &str, rg: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource '{kind}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.body()});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                "retry-after",
                HeaderValue::from_str(&seconds.to_string()).expect("digits"),
            );
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        if self.status == StatusCode::NOT_FOUND || self.status.is_client_error() {
            response.headers_mut().insert(
                "x-ms-failure-cause",
                HeaderValue::from_static(if self.status.as_u16() == 429 {
                    "service"
                } else {
                    "gateway"
                }),
            );
        }
        response
    }
}

/// The nested error a failed deployment reports for one resource: ARM wraps
/// the resource provider's error body, as a JSON string, in a detail whose code
/// names the HTTP status (`BadRequest`, `Conflict`, …).
pub fn nested_detail(status_code: &str, inner: &Value) -> Value {
    json!({
        "code": status_code,
        "message": serde_json::to_string_pretty(inner).unwrap_or_default().replace('\n', "\r\n"),
    })
}

/// `DeploymentFailed` with `details`.
pub fn deployment_failed(details: Vec<Value>) -> Value {
    json!({
        "code": "DeploymentFailed",
        "message": "At least one resource deployment operation failed. Please list deployment operations for details. Please see https://aka.ms/DeployOperations for usage details.",
        "details": details,
    })
}
