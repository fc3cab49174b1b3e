//! What a failed call to the comparison service means for the job: never going to work
//! (dead-letter it, with everything the service said), a make whose recipe is not there yet
//! (retry a bounded number of times), or a passing problem of the service or the network (retry
//! with backoff, and pause receiving). See the outcome table in `docs/sender.md`.

use pipeline_job::JobKind;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The sender's reading of a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The same request can never succeed; the reason has the code, message and details.
    Permanent(String),
    /// NOT_FOUND for a make: its recipe has not been submitted (yet).
    UnknownRecipe(String),
    /// Worth trying again later; `retry_after` is the server's RetryInfo, if it sent one.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// Classifies `status`, the answer to a job of `kind`.
pub fn classify(kind: JobKind, status: &Status) -> Failure {
    match status.code() {
        Code::NotFound if kind == JobKind::Make => Failure::UnknownRecipe(describe(status)),
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::AlreadyExists
        // A recipe is written with allow_missing, so NOT_FOUND cannot mean "not yet".
        | Code::NotFound
        | Code::DataLoss => Failure::Permanent(describe(status)),
        // Ok cannot arrive as an error; if it does, something in between is broken: retry.
        // Refused or unknown calls say the deployment is wrong (mesh policy, identity, an old
        // comparison version), not the file: every job would fail alike, so they wait for the
        // fix behind the circuit breaker instead of filling the dead letters.
        Code::Ok
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented
        | Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal => Failure::Transient {
            reason: describe(status),
            retry_after: status
                .get_error_details()
                .retry_info()
                .and_then(|r| r.retry_delay),
        },
    }
}

/// `CODE: message` followed by every google.rpc detail the status carries, e.g.
/// `INVALID_ARGUMENT: invalid request: …; field violations: make.rating: must be between 0 and 5`.
pub fn describe(status: &Status) -> String {
    let mut out = format!("{}: {}", code_name(status.code()), status.message());
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        let list = bad
            .field_violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>();
        if !list.is_empty() {
            out.push_str(&format!("; field violations: {}", list.join("; ")));
        }
    }
    if let Some(pf) = details.precondition_failure() {
        let list = pf
            .violations
            .iter()
            .map(|v| format!("{} {}: {}", v.r#type, v.subject, v.description))
            .collect::<Vec<_>>();
        if !list.is_empty() {
            out.push_str(&format!("; precondition failures: {}", list.join("; ")));
        }
    }
    if let Some(ri) = details.resource_info() {
        out.push_str(&format!(
            "; resource: {} {:?}: {}",
            ri.resource_type, ri.resource_name, ri.description
        ));
    }
    if let Some(ei) = details.error_info() {
        out.push_str(&format!("; error info: {} ({})", ei.reason, ei.domain));
    }
    if let Some(qf) = details.quota_failure() {
        let list = qf
            .violations
            .iter()
            .map(|v| format!("{}: {}", v.subject, v.description))
            .collect::<Vec<_>>();
        if !list.is_empty() {
            out.push_str(&format!("; quota failures: {}", list.join("; ")));
        }
    }
    if let Some(delay) = details.retry_info().and_then(|r| r.retry_delay) {
        out.push_str(&format!("; retry after {delay:?}"));
    }
    out
}

/// The canonical upper-case name of a gRPC code (shared with the metrics' `code` labels).
pub use telemetry::grpc::code_name;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, FieldViolation};

    #[test]
    fn bad_requests_are_permanent_and_list_every_violation() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid request: 2 problems",
            ErrorDetails::with_bad_request(vec![
                FieldViolation::new("make.rating", "must be between 0 and 5"),
                FieldViolation::new("make.ingredients[2].quantity", "must be a number"),
            ]),
        );
        let Failure::Permanent(reason) = classify(JobKind::Make, &status) else {
            panic!("permanent expected");
        };
        assert!(
            reason.starts_with("INVALID_ARGUMENT: invalid request"),
            "{reason}"
        );
        assert!(
            reason.contains("make.rating: must be between 0 and 5"),
            "{reason}"
        );
        assert!(
            reason.contains("make.ingredients[2].quantity: must be a number"),
            "{reason}"
        );
    }

    #[test]
    fn not_found_means_unknown_recipe_only_for_makes() {
        let status = Status::not_found("recipe \"9\" not found");
        assert!(matches!(
            classify(JobKind::Make, &status),
            Failure::UnknownRecipe(_)
        ));
        assert!(matches!(
            classify(JobKind::Recipe, &status),
            Failure::Permanent(_)
        ));
    }

    #[test]
    fn outages_are_transient_and_keep_the_servers_retry_delay() {
        let status = Status::with_error_details(
            Code::Unavailable,
            "store unavailable",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(5))),
        );
        assert_eq!(
            classify(JobKind::Recipe, &status),
            Failure::Transient {
                reason: "UNAVAILABLE: store unavailable; retry after 5s".into(),
                retry_after: Some(Duration::from_secs(5)),
            }
        );
        for code in [
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Cancelled,
            Code::Unknown,
            Code::Internal,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Unimplemented,
        ] {
            assert!(
                matches!(
                    classify(JobKind::Make, &Status::new(code, "x")),
                    Failure::Transient {
                        retry_after: None,
                        ..
                    }
                ),
                "{code:?}"
            );
        }
        for code in [
            Code::OutOfRange,
            Code::FailedPrecondition,
            Code::AlreadyExists,
        ] {
            assert!(
                matches!(
                    classify(JobKind::Make, &Status::new(code, "x")),
                    Failure::Permanent(_)
                ),
                "{code:?}"
            );
        }
    }

    #[test]
    fn precondition_failures_are_described() {
        let status = Status::with_error_details(
            Code::FailedPrecondition,
            "conflict: other content",
            ErrorDetails::with_precondition_failure_violation("CONFLICT", "make/m1", "key reused"),
        );
        let reason = describe(&status);
        assert_eq!(
            reason,
            "FAILED_PRECONDITION: conflict: other content; precondition failures: CONFLICT make/m1: key reused"
        );
    }
}
