//! One poller for every long-running ARM operation (ARM RPC rules):
//! `Azure-AsyncOperation` first, then `Location`, then the resource's
//! `provisioningState`; `Retry-After` honoured; bounded by the caller's
//! timeout; cancellable; a 404 while deleting means done.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::error::{ArmErrorBody, one_line};
use super::http::Reply;
use super::retry::RetryPolicy;
use super::types::is_terminal_state;
use super::{Error, Result};

/// Cancels waits started with the paired [`CancelToken`].
#[derive(Debug, Clone)]
pub struct CancelHandle(watch::Sender<bool>);

/// Observes a [`CancelHandle`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CancelToken(watch::Receiver<bool>);

/// A connected cancel handle and token.
pub fn cancel_pair() -> (CancelHandle, CancelToken) {
    let (sender, receiver) = watch::channel(false);
    (CancelHandle(sender), CancelToken(receiver))
}

impl CancelHandle {
    /// Cancels every wait holding a token of this pair.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl CancelToken {
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled; never, if the handle is dropped without cancelling.
    pub async fn cancelled(&self) {
        let mut receiver = self.0.clone();
        loop {
            if *receiver.borrow_and_update() {
                return;
            }
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// How to wait for a long-running operation.
#[derive(Debug, Clone)]
pub struct LroOptions {
    /// Give up waiting after this long (the operation may still finish in Azure).
    pub timeout: Duration,
    /// The polling interval when the server gives no `Retry-After`.
    pub default_interval: Duration,
    /// The smallest polling interval, whatever `Retry-After` says.
    pub min_interval: Duration,
    /// Stops the wait when cancelled.
    pub cancel: Option<CancelToken>,
}

impl Default for LroOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30 * 60),
            default_interval: Duration::from_secs(10),
            min_interval: Duration::from_millis(50),
            cancel: None,
        }
    }
}

impl LroOptions {
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    #[must_use]
    pub fn with_interval(mut self, default_interval: Duration) -> Self {
        self.default_interval = default_interval;
        self
    }

    #[must_use]
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = Some(cancel);
        self
    }
}

/// What the operation does to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LroKind {
    /// A PUT: the final answer is the resource.
    Put,
    /// A DELETE: done when gone.
    Delete,
}

/// Waits for the operation whose first answer is `initial`. `get` reads a URL
/// (with authentication and retries). `resource_url` is the resource itself.
/// Returns the final resource for a PUT, `None` for a DELETE.
pub(crate) async fn wait<G, Fut>(
    get: G,
    initial: Reply,
    resource_url: &str,
    kind: LroKind,
    options: &LroOptions,
    policy: &RetryPolicy,
    doing: &str,
) -> Result<Option<Reply>>
where
    G: Fn(String) -> Fut,
    Fut: Future<Output = Result<Reply>>,
{
    let poll = poll(get, initial, resource_url, kind, options, policy, doing);
    let bounded = async {
        match tokio::time::timeout(options.timeout, poll).await {
            Ok(result) => result,
            Err(_) => Err(Error::Deadline {
                doing: doing.to_owned(),
                waited: options.timeout,
            }),
        }
    };
    match &options.cancel {
        Some(cancel) => {
            tokio::select! {
                result = bounded => result,
                () = cancel.cancelled() => Err(Error::Cancelled { doing: doing.to_owned() }),
            }
        }
        None => bounded.await,
    }
}

fn interval(reply: &Reply, options: &LroOptions, policy: &RetryPolicy) -> Duration {
    match reply.retry_after() {
        Some(wait) => policy.server_wait(wait).max(options.min_interval),
        None => options.default_interval.max(options.min_interval),
    }
}

fn provisioning_state(reply: &Reply) -> Option<String> {
    let value: Value = serde_json::from_slice(&reply.body).ok()?;
    value
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn failed(doing: &str, status: &str, reply: &Reply, error: Option<&Value>) -> Error {
    let body = error.and_then(|e| ArmErrorBody::from_value(&serde_json::json!({ "error": e })));
    let (code, message) = match body {
        Some(body) => {
            let (code, message) = super::error::innermost_error(&body);
            (code, one_line(&message))
        }
        None => (status.to_owned(), "no error details given".to_owned()),
    };
    Error::OperationFailed {
        doing: doing.to_owned(),
        status: status.to_owned(),
        code,
        message,
        request_id: reply.request_id(),
    }
}

async fn poll<G, Fut>(
    get: G,
    initial: Reply,
    resource_url: &str,
    kind: LroKind,
    options: &LroOptions,
    policy: &RetryPolicy,
    doing: &str,
) -> Result<Option<Reply>>
where
    G: Fn(String) -> Fut,
    Fut: Future<Output = Result<Reply>>,
{
    if kind == LroKind::Delete && initial.status == 404 {
        return Ok(None);
    }
    let initial = initial.success(doing)?;
    let final_resource = |reply: Option<Reply>| async {
        match kind {
            LroKind::Delete => Ok(None),
            LroKind::Put => match reply {
                Some(reply) if !reply.body.is_empty() => Ok(Some(reply)),
                _ => Ok(Some(get(resource_url.to_owned()).await?.success(doing)?)),
            },
        }
    };

    if let Some(status_url) = initial.header("azure-asyncoperation").map(str::to_owned) {
        let mut last = initial;
        loop {
            tokio::time::sleep(interval(&last, options, policy)).await;
            let reply = get(status_url.clone()).await?;
            if !reply.is_success() {
                // "Could not read the status", not "the operation failed".
                return Err(reply.error(&format!("{doing} (reading the operation status)")));
            }
            let value: Value = reply.json(doing)?;
            let status = value
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("InProgress")
                .to_owned();
            if status.eq_ignore_ascii_case("succeeded") {
                return final_resource(None).await;
            }
            if is_terminal_state(&status) {
                return Err(failed(doing, &status, &reply, value.get("error")));
            }
            last = reply;
        }
    }

    if let Some(location) = initial.header("location").map(str::to_owned) {
        let mut last = initial;
        loop {
            tokio::time::sleep(interval(&last, options, policy)).await;
            let reply = get(location.clone()).await?;
            match reply.status {
                202 => last = reply,
                404 if kind == LroKind::Delete => return Ok(None),
                200..=299 => return final_resource(Some(reply)).await,
                _ => return Err(reply.error(doing)),
            }
        }
    }

    match kind {
        LroKind::Delete => {
            if initial.status != 202 {
                return Ok(None);
            }
            // No status URL: watch the resource until it is gone.
            let mut last = initial;
            loop {
                tokio::time::sleep(interval(&last, options, policy)).await;
                let reply = get(resource_url.to_owned()).await?;
                match reply.status {
                    404 => return Ok(None),
                    200..=299 => last = reply,
                    _ => return Err(reply.error(doing)),
                }
            }
        }
        LroKind::Put => {
            let mut last = initial;
            loop {
                let state = provisioning_state(&last).unwrap_or_else(|| "Succeeded".to_owned());
                if state.eq_ignore_ascii_case("succeeded") {
                    return Ok(Some(last));
                }
                if is_terminal_state(&state) {
                    let value: Value = serde_json::from_slice(&last.body).unwrap_or(Value::Null);
                    return Err(failed(
                        doing,
                        &state,
                        &last,
                        value.pointer("/properties/error"),
                    ));
                }
                tokio::time::sleep(interval(&last, options, policy)).await;
                last = get(resource_url.to_owned()).await?.success(doing)?;
            }
        }
    }
}
