//! What the DynamoDB backends (the recipe store and the watcher's ledger) share about calling
//! DynamoDB: what a failed call means ([`failure`]), and how long to wait before trying an
//! optimistic write again ([`full_jitter`]).

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// What a failed DynamoDB call means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttling, an outage, a timeout, a conflicting transaction: worth trying again.
    Unavailable,
    /// The table does not exist: the backend names the command that creates it.
    MissingTable,
    /// The credentials or the IAM permissions were refused: an operator must act.
    Denied,
    /// DynamoDB rejected the request itself (`ValidationException`).
    Invalid,
    /// Anything else.
    Other,
}

/// A failed call: its kind, and a message naming the operation, the table and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// Error codes after which the same call may well succeed.
const RETRYABLE: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalServerError",
    "InternalFailure",
    "LimitExceededException",
    "TransactionInProgressException",
    "TransactionConflictException",
];

const DENIED: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "MissingAuthenticationTokenException",
];

/// Classifies a failed DynamoDB call `op` (e.g. `GetItem`) on `table`.
pub fn failure<E>(op: &str, table: &str, err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = DisplayErrorContext(err).to_string();
    if matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) {
        return Failure {
            kind: FailureKind::Unavailable,
            message: format!("DynamoDB {op} on {table}: {detail}"),
        };
    }
    let code = err.code().unwrap_or("");
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (kind, message) = match code {
        "ResourceNotFoundException" => (
            FailureKind::MissingTable,
            format!("DynamoDB {op}: table {table} does not exist"),
        ),
        c if RETRYABLE.contains(&c) => (
            FailureKind::Unavailable,
            format!("DynamoDB {op} on {table} ({code}): {detail}"),
        ),
        c if DENIED.contains(&c) => (
            FailureKind::Denied,
            format!(
                "DynamoDB {op} on {table} ({code}): check the AWS credentials and the IAM \
                 permissions on the table: {detail}"
            ),
        ),
        "ValidationException" => (
            FailureKind::Invalid,
            format!("DynamoDB {op} on {table} ({code}): {detail}"),
        ),
        _ if status.is_some_and(|s| s >= 500) => (
            FailureKind::Unavailable,
            format!(
                "DynamoDB {op} on {table} (HTTP {}): {detail}",
                status.unwrap_or_default()
            ),
        ),
        "" => (
            FailureKind::Other,
            format!("DynamoDB {op} on {table} failed (no error code): {detail}"),
        ),
        _ => (
            FailureKind::Other,
            format!("DynamoDB {op} on {table} failed ({code}): {detail}"),
        ),
    };
    Failure { kind, message }
}

/// Full-jitter exponential backoff for attempt `attempt` (from 0): a random wait up to
/// `first`, `2 × first`, `4 × first`, … capped at `cap`, plus a millisecond. Replicas that lost
/// the same race so try again at different moments.
pub fn full_jitter(first: Duration, attempt: u32, cap: Duration) -> Duration {
    let ceiling = first.saturating_mul(1u32 << attempt.min(16)).min(cap);
    ceiling.mul_f64(random_fraction()) + Duration::from_millis(1)
}

/// A uniformly distributed number in [0, 1) from the standard library's random hasher keys.
fn random_fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(status: u16, code: Option<&str>) -> SdkError<ErrorMetadata, HttpResponse> {
        let mut meta = ErrorMetadata::builder().message("said the service");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(meta.build(), raw)
    }

    fn kind(status: u16, code: Option<&str>) -> FailureKind {
        failure("GetItem", "t", &service_error(status, code)).kind
    }

    #[test]
    fn failures_are_classified_by_code_then_status() {
        use FailureKind::*;
        assert_eq!(kind(400, Some("ThrottlingException")), Unavailable);
        assert_eq!(kind(400, Some("TransactionConflictException")), Unavailable);
        assert_eq!(kind(400, Some("ResourceNotFoundException")), MissingTable);
        assert_eq!(kind(400, Some("AccessDeniedException")), Denied);
        assert_eq!(kind(400, Some("ValidationException")), Invalid);
        assert_eq!(kind(503, Some("SomethingNew")), Unavailable);
        assert_eq!(kind(400, Some("SomethingNew")), Other);
        assert_eq!(kind(400, None), Other);
        let timeout: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::timeout_error("no answer in time");
        assert_eq!(failure("Query", "t", &timeout).kind, Unavailable);
    }

    #[test]
    fn messages_name_the_operation_the_table_and_the_code() {
        let f = failure(
            "PutItem",
            "ledger",
            &service_error(400, Some("AccessDeniedException")),
        );
        assert!(
            f.message
                .starts_with("DynamoDB PutItem on ledger (AccessDeniedException)")
        );
        assert!(f.message.contains("IAM permissions"), "{}", f.message);
        let f = failure("PutItem", "ledger", &service_error(400, None));
        assert!(
            f.message.contains("failed (no error code)"),
            "{}",
            f.message
        );
    }

    #[test]
    fn jitter_stays_under_a_doubling_ceiling_and_the_cap() {
        let first = Duration::from_millis(10);
        let cap = Duration::from_secs(1);
        for attempt in 0..40 {
            let ceiling = (first * 2u32.pow(attempt.min(16))).min(cap) + Duration::from_millis(1);
            for _ in 0..50 {
                let wait = full_jitter(first, attempt, cap);
                assert!(wait >= Duration::from_millis(1), "{wait:?}");
                assert!(wait <= ceiling, "attempt {attempt}: {wait:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_waits() {
        let waits: std::collections::BTreeSet<Duration> = (0..50)
            .map(|_| full_jitter(Duration::from_millis(100), 3, Duration::from_secs(1)))
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}
