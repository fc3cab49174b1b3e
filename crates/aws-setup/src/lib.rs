//! Builds the AWS SDK configuration that every service shares.
//!
//! Everything comes from the SDK's normal sources (environment, profile, EKS Pod Identity /
//! IRSA web identity), including `AWS_ENDPOINT_URL` for emulators such as moto. The one thing
//! added here is a default region, so that a local run against an emulator needs no AWS profile.
//! [`TraceCalls`] gives every client a span per API call; [`dynamodb`] holds what the DynamoDB
//! backends share about failed calls and retries.

use aws_config::{BehaviorVersion, Region, SdkConfig};

pub mod dynamodb;
mod trace;
pub use trace::TraceCalls;

/// Region used when neither the environment nor a profile names one.
pub const FALLBACK_REGION: &str = "us-east-1";

/// Loads the shared SDK configuration.
pub async fn load() -> SdkConfig {
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new(FALLBACK_REGION));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .load()
        .await
}
