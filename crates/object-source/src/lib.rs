//! Where recipe files come from: a bucket of objects, read by key.
//!
//! [`ObjectSource`] is the one interface; [`local::LocalFolder`] (a folder acting as the bucket:
//! the embedded default, no AWS) and [`s3::S3Source`] implement it side by side with the same
//! guarantees, checked by one contract test suite (`tests/contract.rs`):
//!
//! - `list` returns keys in byte order of their UTF-8 (as S3 does), filtered by a plain string
//!   prefix, in pages of at most [`MAX_PAGE_SIZE`], holding at most one page per call;
//! - `get` refuses an object larger than the caller's limit without downloading it;
//! - the ETag of an unchanged object is the same in `put`, `head`, `list` and `get`, and changes
//!   when the object is rewritten with other content.
//!
//! [`open`] picks the backend from a URL: `s3://BUCKET[?path_style=true|false]`, `file://PATH`
//! or `dir://PATH`. `docs/objects.md` describes both backends.

use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

pub mod local;
pub mod s3;

/// Largest page a `list` call returns; larger requests are clamped (S3's own maximum).
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Longest accepted key, in bytes of UTF-8 (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// What a listing, `head` or `put` says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    /// Changes whenever the object is rewritten with other content; equal for an unchanged
    /// object. S3: the ETag without its quotes. Local folder: see [`local`].
    pub etag: String,
    /// Bytes.
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// The S3 version id when the bucket is versioned and the call reports one (`list` never
    /// does); always `None` for a local folder.
    pub version_id: Option<String>,
}

/// An object read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub meta: ObjectMeta,
    pub bytes: Vec<u8>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// Pass back as `continuation` (with the same prefix) for the next page; `None` on the last.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object not found: {0}")]
    NotFound(String),
    /// Refused before downloading: the object is larger than the caller accepts.
    #[error("object is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The bucket or folder does not exist (the message says how to create it).
    #[error("object source not ready: {0}")]
    NotReady(String),
    /// Worth retrying: throttling, timeouts, the service unreachable.
    #[error("object source unavailable: {0}")]
    Unavailable(String),
    /// A URL or setting that cannot work.
    #[error("invalid object source: {0}")]
    Invalid(String),
    #[error("object source failure: {0}")]
    Internal(String),
}

impl ObjectError {
    /// True for errors that may go away when the same call is tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ObjectError::Unavailable(_))
    }
}

pub type Result<T, E = ObjectError> = std::result::Result<T, E>;

#[async_trait]
pub trait ObjectSource: Send + Sync + 'static {
    /// The bucket name, or a local folder's display name (its last path component).
    fn bucket(&self) -> &str;

    /// Objects whose key starts with `prefix`, in byte order of their keys, after the position
    /// `continuation` (a `next` from an earlier page with the same prefix). `page_size` 0 means
    /// [`MAX_PAGE_SIZE`]; larger values are clamped to it.
    async fn list(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        page_size: u32,
    ) -> Result<ListPage>;

    /// The whole object, or `TooLarge` (without downloading it) if it has more than `max_bytes`
    /// bytes; `NotFound` if there is no such object.
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Object>;

    /// Creates or replaces the object; readers never see a partial object.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<ObjectMeta>;

    /// The object's metadata; `NotFound` if there is no such object.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;
}

/// Clamps a requested page size into 1..=MAX_PAGE_SIZE (0 means the maximum).
pub fn effective_page_size(requested: u32) -> u32 {
    match requested {
        0 => MAX_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// Room to reserve for a body of `size` bytes: all of it, up to 16 MiB (a sparse file or a
/// misreported length must not make a read reserve memory it will not fill).
pub(crate) fn initial_capacity(size: u64) -> usize {
    const MAX_RESERVE: u64 = 16 * 1024 * 1024;
    usize::try_from(size.min(MAX_RESERVE)).unwrap_or(0)
}

/// What an object source URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `s3://BUCKET`; `path_style` is `None` unless the URL says `?path_style=true|false`.
    S3 {
        bucket: String,
        path_style: Option<bool>,
    },
    /// `file://PATH` or `dir://PATH`: a folder acting as the bucket (relative to the working
    /// directory unless absolute).
    Local { root: PathBuf },
}

const URL_FORMS: &str = "use s3://BUCKET[?path_style=true|false], file://PATH or dir://PATH";

/// Parses an object source URL without touching the network or the disk.
pub fn parse_url(url: &str) -> Result<Location> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, query) = match rest.split_once('?') {
            Some((bucket, query)) => (bucket, Some(query)),
            None => (rest, None),
        };
        let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
        if bucket.contains('/') {
            return Err(ObjectError::Invalid(format!(
                "{url:?}: an s3 URL names a bucket only; pass key prefixes to list calls"
            )));
        }
        s3::check_bucket_name(bucket)?;
        let mut path_style = None;
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            path_style = match pair {
                "path_style=true" => Some(true),
                "path_style=false" => Some(false),
                other => {
                    return Err(ObjectError::Invalid(format!(
                        "{url:?}: unknown or malformed parameter {other:?} (the only one is \
                         path_style=true|false)"
                    )));
                }
            };
        }
        return Ok(Location::S3 {
            bucket: bucket.to_string(),
            path_style,
        });
    }
    let path = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("dir://"));
    match path {
        Some("") => Err(ObjectError::Invalid(format!(
            "{url:?} names no folder; {URL_FORMS}"
        ))),
        Some(path) => Ok(Location::Local {
            root: PathBuf::from(path),
        }),
        None => Err(ObjectError::Invalid(format!(
            "unsupported object source URL {url:?}: {URL_FORMS}"
        ))),
    }
}

/// Opens the object source a URL names. Makes no network call; S3 uses the shared AWS
/// configuration (`aws-setup`), with path-style addressing when an endpoint override
/// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`) is configured unless the URL says otherwise.
pub async fn open(url: &str) -> Result<Arc<dyn ObjectSource>> {
    match parse_url(url)? {
        Location::S3 { bucket, path_style } => {
            let config = aws_setup::load().await;
            let path_style = path_style.unwrap_or_else(|| s3::endpoint_is_overridden(&config));
            Ok(Arc::new(s3::S3Source::new(&config, &bucket, path_style)?))
        }
        Location::Local { root } => Ok(Arc::new(local::LocalFolder::new(root)?)),
    }
}

/// Creates the bucket or folder a URL names; succeeds if it exists already (and, for S3, is
/// owned by this account). For tests and setup.
pub async fn create_bucket(url: &str) -> Result<()> {
    match parse_url(url)? {
        Location::S3 { bucket, path_style } => {
            let config = aws_setup::load().await;
            let path_style = path_style.unwrap_or_else(|| s3::endpoint_is_overridden(&config));
            s3::S3Source::new(&config, &bucket, path_style)?
                .create_bucket()
                .await
        }
        Location::Local { root } => local::LocalFolder::new(root)?.create().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("s3://recipes-in").unwrap(),
            Location::S3 {
                bucket: "recipes-in".into(),
                path_style: None
            }
        );
        assert_eq!(
            parse_url("s3://recipes-in/?path_style=true").unwrap(),
            Location::S3 {
                bucket: "recipes-in".into(),
                path_style: Some(true)
            }
        );
        assert_eq!(
            parse_url("s3://recipes-in?path_style=false").unwrap(),
            Location::S3 {
                bucket: "recipes-in".into(),
                path_style: Some(false)
            }
        );
        assert_eq!(
            parse_url("file:///srv/inbox").unwrap(),
            Location::Local {
                root: "/srv/inbox".into()
            }
        );
        assert_eq!(
            parse_url("dir://data/inbox").unwrap(),
            Location::Local {
                root: "data/inbox".into()
            }
        );
    }

    #[test]
    fn bad_urls_are_invalid() {
        for url in [
            "",
            "/srv/inbox",
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://bucket/prefix",
            "s3://bucket?path_style=yes",
            "s3://bucket?region=eu-west-1",
            "s3://-bucket",
            "file://",
            "http://bucket",
        ] {
            assert!(
                matches!(parse_url(url), Err(ObjectError::Invalid(_))),
                "{url:?} should be invalid"
            );
        }
    }

    #[test]
    fn page_sizes_are_clamped() {
        assert_eq!(effective_page_size(0), MAX_PAGE_SIZE);
        assert_eq!(effective_page_size(3), 3);
        assert_eq!(effective_page_size(5000), MAX_PAGE_SIZE);
    }
}
