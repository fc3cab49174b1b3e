//! What travels on the job queue between the watcher and the sender.
//!
//! A [`Job`] is a *reference* to one file in the bucket (bucket, key, ETag, whether it is a
//! recipe or a make), never the file itself: the sender reads the file when it works on the
//! job, so messages stay small and a file is read once. The watcher builds jobs from listings
//! (poll mode) or from S3 event notifications ([`s3_event`]); the [`KeyLayout`] decides which
//! keys are recipes, which are makes and which are none of our business.
//!
//! The wire format is JSON with a version field, documented in `docs/pipeline.md`.

mod layout;
pub mod s3_event;

pub use layout::{Classified, KeyLayout};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the job format this crate writes and reads.
pub const JOB_FORMAT_VERSION: u32 = 1;
/// Longest idempotency key the comparison service accepts, in bytes; longer ones are hashed.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 512;
/// Longest `source` the comparison service keeps with a make, in bytes; longer ones are cut.
pub const MAX_SOURCE_BYTES: usize = 1024;

/// What a file holds, decided by its key (see [`KeyLayout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// An original recipe: created, or updated to a new version.
    Recipe,
    /// One make of a recipe: compared with the recipe and recorded.
    Make,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Recipe => "recipe",
            JobKind::Make => "make",
        }
    }
}

/// How the watcher noticed the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detection {
    /// A listing of the bucket or folder.
    Poll,
    /// An S3 event notification.
    Event,
}

/// A reference to one version of one file, to be submitted to the comparison service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// [`JOB_FORMAT_VERSION`] when written.
    pub v: u32,
    pub kind: JobKind,
    /// `s3` or `dir`: how the bucket is reached, used in the object's URI.
    pub scheme: String,
    pub bucket: String,
    pub key: String,
    /// The ETag the watcher saw (without quotes).
    pub etag: String,
    /// Bytes, as the watcher saw them.
    pub size: u64,
    /// The S3 version id when the bucket is versioned and the event carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    pub detected_by: Detection,
    /// When the watcher noticed the file, milliseconds since the Unix epoch (for latency).
    pub detected_at_ms: i64,
}

/// Why a message body is not a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("not a job: {0}")]
    Malformed(String),
    #[error(
        "job format version {0} is not supported (this build reads version {JOB_FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
}

impl Job {
    /// The message body.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serialises.
        serde_json::to_string(self).expect("a job serialises to JSON")
    }

    /// Reads a message body written by [`Job::to_json`].
    pub fn from_json(body: &str) -> Result<Job, JobError> {
        let job: Job =
            serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
        if job.v != JOB_FORMAT_VERSION {
            return Err(JobError::UnsupportedVersion(job.v));
        }
        if job.key.is_empty() || job.bucket.is_empty() || job.etag.is_empty() {
            return Err(JobError::Malformed(
                "bucket, key and etag must not be empty".into(),
            ));
        }
        Ok(job)
    }

    /// `s3://bucket/key` (or `dir://folder/key`): where the file is.
    pub fn object_uri(&self) -> String {
        format!("{}://{}/{}", self.scheme, self.bucket, self.key)
    }

    /// The object URI, cut to what the comparison service keeps as a make's `source`.
    pub fn source(&self) -> String {
        let mut uri = self.object_uri();
        if uri.len() > MAX_SOURCE_BYTES {
            let mut end = MAX_SOURCE_BYTES - '…'.len_utf8();
            while !uri.is_char_boundary(end) {
                end -= 1;
            }
            uri.truncate(end);
            uri.push('…');
        }
        uri
    }

    /// The idempotency key for the content with `etag` at this job's key: `URI#ETAG`, or
    /// `sha256:<hex of it>` when that is longer than the service accepts. The same file version
    /// always gets the same key, however often it is detected or retried, so it is recorded once;
    /// a rewrite with other content gets a new one.
    ///
    /// The sender passes the ETag it actually read, which differs from [`Job::etag`] when the file
    /// was rewritten after the watcher saw it; the newer version's own job then finds its make
    /// recorded already.
    pub fn idempotency_key(&self, etag: &str) -> String {
        let key = format!("{}#{}", self.object_uri(), etag);
        if key.len() <= MAX_IDEMPOTENCY_KEY_BYTES && !key.chars().any(char::is_control) {
            key
        } else {
            format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str) -> Job {
        Job {
            v: JOB_FORMAT_VERSION,
            kind: JobKind::Make,
            scheme: "s3".into(),
            bucket: "recipes-in".into(),
            key: key.into(),
            etag: "9b2cf535f27731c974343645a3985328".into(),
            size: 812,
            version_id: None,
            detected_by: Detection::Poll,
            detected_at_ms: 1_764_000_000_000,
        }
    }

    #[test]
    fn jobs_round_trip_through_json() {
        let j = job("makes/2026/pancakes.json");
        let body = j.to_json();
        assert!(body.contains(r#""kind":"make""#), "{body}");
        assert!(body.contains(r#""detectedBy":"poll""#), "{body}");
        assert!(
            !body.contains("versionId"),
            "absent version id is left out: {body}"
        );
        assert_eq!(Job::from_json(&body).unwrap(), j);
        let mut versioned = j.clone();
        versioned.version_id = Some("3HL4kqtJlcpXroDTDmJ".into());
        assert_eq!(Job::from_json(&versioned.to_json()).unwrap(), versioned);
    }

    #[test]
    fn bodies_that_are_not_jobs_say_why() {
        assert!(matches!(Job::from_json("{}"), Err(JobError::Malformed(_))));
        assert!(matches!(
            Job::from_json("not json"),
            Err(JobError::Malformed(_))
        ));
        let mut future = job("makes/a.json");
        future.v = 2;
        assert!(matches!(
            Job::from_json(&future.to_json()),
            Err(JobError::UnsupportedVersion(2))
        ));
        let mut empty = job("makes/a.json");
        empty.etag.clear();
        assert!(matches!(
            Job::from_json(&empty.to_json()),
            Err(JobError::Malformed(_))
        ));
        let extra = job("makes/a.json")
            .to_json()
            .replace('}', r#","body":"{}"}"#);
        assert!(matches!(
            Job::from_json(&extra),
            Err(JobError::Malformed(_))
        ));
    }

    #[test]
    fn idempotency_keys_name_the_version_and_stay_in_bounds() {
        let j = job("makes/pancakes.json");
        assert_eq!(
            j.idempotency_key("abc"),
            "s3://recipes-in/makes/pancakes.json#abc"
        );
        assert_ne!(j.idempotency_key("abc"), j.idempotency_key("abd"));
        let long = job(&format!("makes/{}.json", "é".repeat(400)));
        let a = long.idempotency_key("abc");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        assert_eq!(a, long.idempotency_key("abc"), "stable");
        assert_ne!(a, long.idempotency_key("abd"));
    }

    #[test]
    fn sources_are_cut_on_a_character_boundary() {
        let long = job(&format!("makes/{}.json", "é".repeat(700)));
        let s = long.source();
        assert!(s.len() <= MAX_SOURCE_BYTES, "{}", s.len());
        assert!(s.ends_with('…'));
        assert_eq!(job("makes/a.json").source(), "s3://recipes-in/makes/a.json");
    }
}
