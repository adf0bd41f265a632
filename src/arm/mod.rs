//! Azure Resource Manager client for Azure Stack Hub.
//!
//! Everything aksup says to ARM goes through [`ArmClient`]:
//!
//! - [`AzureEnvironment`]: the endpoints and the token audience, from the
//!   apimodel's `customCloudProfile.environment`, a named public cloud, or the
//!   stamp's metadata endpoint derived from `portalURL`;
//! - [`ApiProfile`]: the api-version of every resource type we call
//!   (`2020-09-01-hybrid`, `2019-03-01-hybrid` or `latest`);
//! - [`CredentialConfig`] / [`ArmCredential`]: AAD or ADFS, client secret or
//!   client certificate, on `azure_core`'s `TokenCredential` trait;
//! - [`RetryPolicy`]: the one place that decides whether a failure is retried;
//! - [`LroOptions`]: deadline, polling interval and cancellation of
//!   long-running operations.
//!
//! The module never prints and never puts a secret or a token into an error,
//! a log line or a `Debug` output.

mod azure_cli;
mod client;
mod credential;
mod environment;
mod error;
mod http;
mod lro;
mod profile;
mod retry;
mod types;

pub use azure_cli::{azure_cli_config_dir, subscription_from_azure_cli};
pub use client::{ArmClient, ArmConfig, HttpOptions, resolve_subscription_id};
pub use credential::{
    ArmCredential, AuthMethod, CredentialConfig, CredentialOptions, IdentitySystem, Secret,
    parse_www_authenticate, tenant_from_authorization_uri,
};
pub use environment::{
    AzureEnvironment, EnvironmentSource, MetadataAuthentication, MetadataEndpoints,
    metadata_url_from_portal,
};
pub use error::{ArmErrorBody, Error, Result, TransportKind, innermost_error, one_line};
pub use lro::{CancelHandle, CancelToken, LroOptions, cancel_pair};
pub use profile::{ApiProfile, ResourceType};
pub use retry::{
    Decision, Outcome, RETRYABLE_ANOTHER_OPERATION, RetryPolicy, is_retryable_status,
    is_retryable_transport, parse_retry_after,
};
pub use types::*;
