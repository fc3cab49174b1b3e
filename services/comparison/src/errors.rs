//! How failures become gRPC statuses, with the google.rpc details a caller can act on:
//! BadRequest field violations for INVALID_ARGUMENT, ResourceInfo for NOT_FOUND and
//! ALREADY_EXISTS, PreconditionFailure for FAILED_PRECONDITION, RetryInfo for UNAVAILABLE.
//! Internal failures are logged in full and returned without internals.

use recipe_model::FieldViolation;
use recipe_store::StoreError;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// INVALID_ARGUMENT listing every violation.
pub fn invalid_argument(violations: Vec<FieldViolation>) -> Status {
    let message = match violations.as_slice() {
        [one] => format!("invalid request: {one}"),
        many => format!(
            "invalid request: {} problems, first: {}",
            many.len(),
            many.first().map(ToString::to_string).unwrap_or_default()
        ),
    };
    let details = ErrorDetails::with_bad_request(
        violations
            .into_iter()
            .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
            .collect::<Vec<_>>(),
    );
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// Prefixes every violation's field with the request field that holds the document, so that
/// `ingredients[2].quantity` becomes `make.ingredients[2].quantity`.
pub fn under(prefix: &str, violations: Vec<FieldViolation>) -> Vec<FieldViolation> {
    violations
        .into_iter()
        .map(|v| FieldViolation {
            field: if v.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", v.field)
            },
            description: v.description,
        })
        .collect()
}

pub fn not_found(resource_type: &str, name: &str) -> Status {
    Status::with_error_details(
        Code::NotFound,
        format!("{resource_type} {name:?} not found"),
        ErrorDetails::with_resource_info(resource_type, name, "", "does not exist"),
    )
}

/// Maps a store failure on the resource `(type, name)` the call was about.
pub fn from_store(err: StoreError, resource_type: &str, name: &str) -> Status {
    match err {
        StoreError::NotFound(what) => Status::with_error_details(
            Code::NotFound,
            format!("{what} not found"),
            ErrorDetails::with_resource_info(resource_type, name, "", "does not exist"),
        ),
        StoreError::AlreadyExists(what) => Status::with_error_details(
            Code::AlreadyExists,
            format!("{what} already exists"),
            ErrorDetails::with_resource_info(
                resource_type,
                name,
                "",
                "already exists; use UpdateRecipe to write a new version",
            ),
        ),
        StoreError::Conflict(why) => Status::with_error_details(
            Code::FailedPrecondition,
            format!("conflict: {why}"),
            ErrorDetails::with_precondition_failure_violation(
                "CONFLICT",
                format!("{resource_type}/{name}"),
                why,
            ),
        ),
        StoreError::Stale(why) => Status::with_error_details(
            Code::Aborted,
            format!("the recipe changed while the make was compared with it, retry: {why}"),
            ErrorDetails::with_retry_info(Some(Duration::from_millis(100))),
        ),
        StoreError::InvalidPageToken(why) => invalid_argument(vec![FieldViolation::new(
            "pageToken",
            format!("{why}; pass a nextPageToken from the same list call, or leave it empty"),
        )]),
        StoreError::Unavailable(why) => {
            tracing::warn!(error = %why, "store unavailable");
            Status::with_error_details(
                Code::Unavailable,
                format!("store unavailable, retry later: {why}"),
                ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
            )
        }
        StoreError::NotReady(why) => {
            tracing::error!(error = %why, "store not ready");
            Status::with_error_details(
                Code::Unavailable,
                format!("store not ready: {why}"),
                ErrorDetails::with_retry_info(Some(Duration::from_secs(5))),
            )
        }
        StoreError::Internal(why) => {
            tracing::error!(error = %why, "store failure");
            Status::internal("internal store error; the server log has the details")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_details_carry_every_violation() {
        let status = invalid_argument(under(
            "make",
            vec![
                FieldViolation::new("rating", "must be between 0 and 5"),
                FieldViolation::new("", "not JSON"),
            ],
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("bad request").field_violations;
        assert_eq!(violations[0].field, "make.rating");
        assert_eq!(violations[1].field, "make");
    }

    #[test]
    fn store_errors_map_to_their_codes() {
        let cases = [
            (StoreError::NotFound("x".into()), Code::NotFound),
            (StoreError::AlreadyExists("x".into()), Code::AlreadyExists),
            (StoreError::Conflict("x".into()), Code::FailedPrecondition),
            (StoreError::Stale("x".into()), Code::Aborted),
            (
                StoreError::InvalidPageToken("x".into()),
                Code::InvalidArgument,
            ),
            (StoreError::Unavailable("x".into()), Code::Unavailable),
            (StoreError::NotReady("x".into()), Code::Unavailable),
            (StoreError::Internal("secret".into()), Code::Internal),
        ];
        for (err, code) in cases {
            let status = from_store(err, "recipe", "r1");
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret"));
        }
    }
}
