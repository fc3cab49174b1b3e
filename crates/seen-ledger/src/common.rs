//! Checks and helpers both backends share, so that a request one backend accepts the other
//! accepts too: input validation, the clock, and how entries with the same key in one call are
//! ordered.

use crate::{
    LedgerError, MAX_ETAG_BYTES, MAX_KEY_BYTES, MAX_LEASE, MAX_MARKER_NAME_BYTES,
    MAX_MARKER_VALUE_BYTES, MAX_OWNER_BYTES, MAX_SCOPE_BYTES, ObjectVersion, RESERVED_SCOPE_PREFIX,
    Result,
};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many bad entries an `Invalid` message names before it only counts the rest.
const NAMED_PROBLEMS: usize = 5;

/// Wall-clock time in milliseconds since the Unix epoch. Wall clock rather than a monotonic one
/// because replicas (processes, machines) compare these numbers through the ledger.
pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is broken; treat it as the epoch rather than panicking.
        Err(_) => 0,
    }
}

/// Milliseconds of a duration already checked against [`MAX_LEASE`].
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn check_scope(scope: &str) -> Result<()> {
    if scope.is_empty() || scope.len() > MAX_SCOPE_BYTES {
        return Err(LedgerError::Invalid(format!(
            "the scope must be 1 to {MAX_SCOPE_BYTES} bytes long, not {}",
            scope.len()
        )));
    }
    if scope.starts_with(RESERVED_SCOPE_PREFIX) {
        return Err(LedgerError::Invalid(format!(
            "scope {scope:?} starts with {RESERVED_SCOPE_PREFIX:?}, which the ledger reserves \
             for markers"
        )));
    }
    Ok(())
}

fn check_version(v: &ObjectVersion) -> std::result::Result<(), String> {
    if v.key.is_empty() || v.key.len() > MAX_KEY_BYTES {
        let shown: String = v.key.chars().take(40).collect();
        return Err(format!(
            "key {shown:?}… is {} bytes long; keys are 1 to {MAX_KEY_BYTES} bytes",
            v.key.len()
        ));
    }
    if v.etag.is_empty() {
        return Err(format!("key {:?} has an empty ETag", v.key));
    }
    if v.etag.len() > MAX_ETAG_BYTES {
        return Err(format!(
            "key {:?} has a {}-byte ETag; at most {MAX_ETAG_BYTES} bytes",
            v.key,
            v.etag.len()
        ));
    }
    Ok(())
}

/// Refuses the whole call if any entry would be refused, naming the first few bad ones.
pub(crate) fn check_versions(op: &str, versions: &[ObjectVersion]) -> Result<()> {
    let problems: Vec<String> = versions
        .iter()
        .enumerate()
        .filter_map(|(i, v)| check_version(v).err().map(|e| format!("entry {i}: {e}")))
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    let mut text = problems
        .iter()
        .take(NAMED_PROBLEMS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > NAMED_PROBLEMS {
        text.push_str(&format!("; and {} more", problems.len() - NAMED_PROBLEMS));
    }
    Err(LedgerError::Invalid(format!(
        "{op}: nothing done; {} of {} entries are not acceptable: {text}",
        problems.len(),
        versions.len()
    )))
}

pub(crate) fn check_owner(op: &str, owner: &str) -> Result<()> {
    if owner.is_empty() || owner.len() > MAX_OWNER_BYTES {
        return Err(LedgerError::Invalid(format!(
            "{op}: the owner must be 1 to {MAX_OWNER_BYTES} bytes long, not {}",
            owner.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_lease(lease: Duration) -> Result<()> {
    if lease < Duration::from_millis(1) || lease > MAX_LEASE {
        return Err(LedgerError::Invalid(format!(
            "claim: the lease must be 1 ms to {} s, not {lease:?}",
            MAX_LEASE.as_secs()
        )));
    }
    Ok(())
}

pub(crate) fn check_marker(name: &str, value: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_MARKER_NAME_BYTES {
        return Err(LedgerError::Invalid(format!(
            "marker_or_insert: the name must be 1 to {MAX_MARKER_NAME_BYTES} bytes long, not {}",
            name.len()
        )));
    }
    if value.len() > MAX_MARKER_VALUE_BYTES {
        return Err(LedgerError::Invalid(format!(
            "marker_or_insert: marker {name:?}: the value is {} bytes, at most \
             {MAX_MARKER_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// For each entry, whether it is the first with its key in the call. Only those may claim.
pub(crate) fn first_occurrences(versions: &[ObjectVersion]) -> Vec<bool> {
    let mut seen = std::collections::HashSet::with_capacity(versions.len());
    versions
        .iter()
        .map(|v| seen.insert(v.key.as_str()))
        .collect()
}

/// Indexes grouped so that no group holds a key twice: first occurrences, then second ones, …
/// Applying the groups in turn has the effect of applying the entries in input order, which is
/// what the embedded ledger does inside its transaction; DynamoDB needs it because one request
/// may not touch an item twice.
pub(crate) fn rounds(versions: &[ObjectVersion]) -> Vec<Vec<usize>> {
    let mut count: HashMap<&str, usize> = HashMap::with_capacity(versions.len());
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let n = count.entry(v.key.as_str()).or_insert(0);
        if out.len() <= *n {
            out.push(Vec::new());
        }
        out[*n].push(i);
        *n += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(key: &str, etag: &str) -> ObjectVersion {
        ObjectVersion::new(key, etag)
    }

    #[test]
    fn keys_are_counted_in_bytes() {
        let ok = v(&"é".repeat(MAX_KEY_BYTES / 2), "e1");
        assert!(check_versions("claim", &[ok]).is_ok());
        let long = v(&format!("{}x", "é".repeat(MAX_KEY_BYTES / 2)), "e1");
        let err = check_versions("claim", &[v("a", "e"), long]);
        assert!(
            matches!(&err, Err(LedgerError::Invalid(m)) if m.contains("entry 1")),
            "{err:?}"
        );
        assert!(check_versions("claim", &[v("", "e")]).is_err());
        assert!(check_versions("claim", &[v("a", "")]).is_err());
        assert!(check_versions("claim", &[v("a", &"e".repeat(MAX_ETAG_BYTES + 1))]).is_err());
    }

    #[test]
    fn many_problems_are_summarised() {
        let bad: Vec<ObjectVersion> = (0..20).map(|i| v(&format!("k{i}"), "")).collect();
        let err = check_versions("settled", &bad).err().map(|e| e.to_string());
        let text = err.unwrap_or_default();
        assert!(
            text.contains("20 of 20") && text.contains("and 15 more"),
            "{text}"
        );
    }

    #[test]
    fn leases_owners_scopes_and_markers_are_bounded() {
        assert!(check_lease(Duration::ZERO).is_err());
        assert!(check_lease(Duration::from_millis(1)).is_ok());
        assert!(check_lease(MAX_LEASE).is_ok());
        assert!(check_lease(MAX_LEASE + Duration::from_millis(1)).is_err());
        assert!(check_owner("claim", "").is_err());
        assert!(check_owner("claim", &"o".repeat(MAX_OWNER_BYTES + 1)).is_err());
        assert!(check_owner("claim", "watcher-0").is_ok());
        assert!(check_scope("").is_err());
        assert!(check_scope("marker#s3://b").is_err());
        assert!(check_scope("s3://bucket/prefix").is_ok());
        assert!(check_marker("", "v").is_err());
        assert!(check_marker("started_at", "").is_ok());
        assert!(check_marker("started_at", &"v".repeat(MAX_MARKER_VALUE_BYTES + 1)).is_err());
    }

    #[test]
    fn duplicates_are_ordered_into_rounds() {
        let input = [
            v("a", "1"),
            v("b", "1"),
            v("a", "2"),
            v("a", "3"),
            v("c", "1"),
        ];
        assert_eq!(
            first_occurrences(&input),
            vec![true, true, false, false, true]
        );
        assert_eq!(rounds(&input), vec![vec![0, 1, 4], vec![2], vec![3]]);
        assert!(rounds(&[]).is_empty());
    }
}
