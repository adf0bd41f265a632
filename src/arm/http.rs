//! The HTTPS client (TLS trust, timeouts, no redirects) and the retry loop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ArmErrorBody, innermost_error, one_line};
use super::retry::{Decision, Outcome, RetryPolicy, parse_retry_after};
use super::{Error, Result, TransportKind};

/// The body of a request.
#[derive(Debug, Clone)]
pub(crate) enum RequestBody {
    None,
    Json(Value),
    /// `application/x-www-form-urlencoded`
    Form(Vec<(&'static str, String)>),
}

/// One prepared attempt: method, absolute URL, bearer token, body.
pub(crate) type Prepared = (reqwest::Method, String, Option<String>, RequestBody);

/// A complete HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub url: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    }

    pub fn request_id(&self) -> Option<String> {
        self.header("x-ms-request-id")
            .or_else(|| self.header("x-ms-correlation-request-id"))
            .map(str::to_owned)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after").and_then(parse_retry_after)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: DeserializeOwned>(&self, doing: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            doing: doing.to_owned(),
            url: strip_query(&self.url),
            source,
        })
    }

    /// The ARM error of a failed answer.
    pub fn error(&self, doing: &str) -> Error {
        let (code, message) = match ArmErrorBody::parse(&self.body) {
            Some(body) => {
                // Name the innermost cause too when it differs (InvalidTemplate → details).
                let (inner_code, inner_message) = innermost_error(&body);
                let message = one_line(&body.message);
                if inner_code != body.code && !inner_code.is_empty() {
                    (
                        body.code,
                        format!("{message}; caused by {inner_code}: {inner_message}"),
                    )
                } else {
                    (body.code, message)
                }
            }
            None => (
                format!("HTTP{}", self.status),
                format!(
                    "HTTP status {} from {}",
                    self.status,
                    strip_query(&self.url)
                ),
            ),
        };
        Error::Arm {
            doing: doing.to_owned(),
            status: self.status,
            code,
            message,
            request_id: self.request_id(),
        }
    }

    /// `Ok(self)` for a 2xx answer, else the ARM error.
    pub fn success(self, doing: &str) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.error(doing))
        }
    }
}

pub(crate) fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

/// The HTTPS client shared by the credential and the ARM calls.
pub(crate) struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
    rng: Mutex<StdRng>,
}

fn read_ca(path: &Path, what: &'static str) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| Error::BadPem {
        what,
        path: path.to_owned(),
        reason: "it is not a PEM bundle of certificates".into(),
    })?;
    if certs.is_empty() {
        return Err(Error::BadPem {
            what,
            path: path.to_owned(),
            reason: "it holds no BEGIN CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

impl Http {
    /// A client trusting the system roots plus the PEM bundles in `ca_files`.
    /// Certificate verification is always on; redirects are never followed.
    pub fn new(
        ca_files: &[(PathBuf, &'static str)],
        resolve: &[(String, std::net::SocketAddr)],
        connect_timeout: Duration,
        request_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let mut extra = Vec::new();
        for (path, what) in ca_files {
            extra.extend(read_ca(path, what)?);
        }
        let mut builder = reqwest::Client::builder();
        for (host, address) in resolve {
            builder = builder.resolve(host, *address);
        }
        let client = builder
            .tls_certs_merge(extra)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .user_agent(concat!("aksup/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::HttpClient(error.to_string()))?;
        let rng = match retry.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Self {
            client,
            retry,
            rng: Mutex::new(rng),
        })
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Sends the request `prepare` builds (called again for each attempt, so a
    /// token can be refreshed) and retries as [`RetryPolicy`] decides. Returns
    /// the final HTTP answer whatever its status; `Err` only when no answer came.
    pub async fn execute<F, Fut>(&self, doing: &str, mut prepare: F) -> Result<Reply>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Prepared>>,
    {
        let mut attempt = 1u32;
        loop {
            let (method, url, bearer, body) = prepare().await?;
            let mut request = self.client.request(method.clone(), &url);
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            request = match body {
                RequestBody::None => request,
                RequestBody::Json(value) => request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(value.to_string()),
                RequestBody::Form(pairs) => {
                    let encoded = url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
                        .finish();
                    request
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(encoded)
                }
            };
            let result = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => Ok(Reply {
                            status,
                            headers,
                            body: body.to_vec(),
                            url: url.clone(),
                        }),
                        Err(error) => Err(error),
                    }
                }
                Err(error) => Err(error),
            };
            let result = match result {
                Ok(reply) if reply.is_success() => return Ok(reply),
                other => other,
            };
            let decision = {
                let mut rng = self
                    .rng
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match &result {
                    Ok(reply) => {
                        let code = ArmErrorBody::parse(&reply.body).map(|body| body.code);
                        self.retry.decide(
                            attempt,
                            &Outcome::Status {
                                status: reply.status,
                                code: code.as_deref(),
                                retry_after: reply.retry_after(),
                            },
                            &mut *rng,
                        )
                    }
                    Err(error) => {
                        self.retry
                            .decide(attempt, &Outcome::Transport(classify(error)), &mut *rng)
                    }
                }
            };
            match decision {
                Decision::GiveUp => {
                    return result.map_err(|source| Error::Transport {
                        doing: doing.to_owned(),
                        url: strip_query(&url),
                        kind: classify(&source),
                        source,
                    });
                }
                Decision::Retry { after } => {
                    tracing::debug!(
                        doing,
                        method = %method,
                        url = %strip_query(&url),
                        attempt,
                        wait_ms = after.as_millis() as u64,
                        status = result.as_ref().ok().map(|r| r.status),
                        "retrying ARM request"
                    );
                    tokio::time::sleep(after).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Classifies a transport failure from its type (never its text).
pub(crate) fn classify(error: &reqwest::Error) -> TransportKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut io_kind = None;
    while let Some(current) = source {
        if current.downcast_ref::<rustls::Error>().is_some() {
            return TransportKind::Tls;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
            // `io::Error::source` skips the wrapped error itself: step into it.
            if let Some(inner) = io.get_ref() {
                source = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        source = current.source();
    }
    if error.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
        return TransportKind::Timeout;
    }
    if matches!(
        io_kind,
        Some(
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    ) {
        return TransportKind::Reset;
    }
    if error.is_connect() {
        return TransportKind::Connect;
    }
    if error.is_request() || error.is_body() {
        return TransportKind::Reset;
    }
    TransportKind::Other
}
