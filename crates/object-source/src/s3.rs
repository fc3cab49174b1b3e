//! The S3 backend: one bucket, read with ListObjectsV2, HeadObject and GetObject.
//!
//! The client is built from the shared SDK configuration (`aws-setup`) plus one S3 setting:
//! path-style addressing (`http://endpoint/BUCKET/KEY`), which emulators such as moto need when
//! their endpoint is an IP address or `localhost` (virtual-hosted style would put the bucket in
//! the host name). ETags are returned without their quotes. `get` reads the object's length from
//! the GetObject response headers and stops before reading a body larger than the limit.

use crate::{
    ListPage, MAX_KEY_BYTES, Object, ObjectError, ObjectMeta, ObjectSource, Result,
    effective_page_size,
};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

/// Whether the configuration points S3 at another endpoint than AWS's (an emulator, usually),
/// through `AWS_ENDPOINT_URL`, a profile's `endpoint_url` or `AWS_ENDPOINT_URL_S3`.
pub fn endpoint_is_overridden(config: &SdkConfig) -> bool {
    config.endpoint_url().is_some()
        || std::env::var("AWS_ENDPOINT_URL_S3").is_ok_and(|v| !v.is_empty())
}

/// Checks the S3 bucket naming rules (3–63 characters: lowercase letters, digits, '.', '-',
/// starting and ending with a letter or digit).
pub fn check_bucket_name(bucket: &str) -> Result<()> {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(bucket.chars().next())
        && edge_ok(bucket.chars().last())
        && !bucket.contains("..");
    if valid {
        Ok(())
    } else {
        Err(ObjectError::Invalid(format!(
            "{bucket:?} is not a valid S3 bucket name (3-63 characters: lowercase letters, \
             digits, '.' and '-', starting and ending with a letter or digit)"
        )))
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(ObjectError::InvalidKey("empty key".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ObjectError::InvalidKey(format!(
            "{key:?} is longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// An ETag as S3 sends it, `"…"`, without the quotes.
pub fn strip_etag_quotes(etag: &str) -> &str {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(etag)
}

fn millis(time: Option<&DateTime>) -> i64 {
    time.and_then(|t| t.to_millis().ok()).unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Source {
    client: Client,
    bucket: String,
}

impl S3Source {
    /// A source on `bucket` using the shared SDK configuration; `path_style` selects path-style
    /// addressing (needed for emulators on an IP address or `localhost`). Makes no network call.
    pub fn new(config: &SdkConfig, bucket: &str, path_style: bool) -> Result<Self> {
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .interceptor(aws_setup::TraceCalls)
            .build();
        Self::with_client(Client::from_conf(s3_config), bucket)
    }

    /// A source on `bucket` using a ready client.
    pub fn with_client(client: Client, bucket: &str) -> Result<Self> {
        check_bucket_name(bucket)?;
        Ok(Self {
            client,
            bucket: bucket.to_string(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the bucket in the client's region; fine if this account owns it already.
    pub async fn create_bucket(&self) -> Result<()> {
        let mut request = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the default location and must not be named.
        let region = self.client.config().region().map(|r| r.as_ref());
        if let Some(region) = region.filter(|r| *r != "us-east-1") {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyExists") => {
                Err(ObjectError::Invalid(format!(
                    "bucket {} belongs to another account; choose another name",
                    self.bucket
                )))
            }
            Err(e) => Err(self.sdk_error("CreateBucket", None, e)),
        }
    }

    /// Maps an SDK error onto the source's error kinds.
    fn sdk_error<E>(
        &self,
        op: &str,
        key: Option<&str>,
        err: SdkError<E, HttpResponse>,
    ) -> ObjectError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let bucket = &self.bucket;
        let target = match key {
            Some(key) => format!("s3://{bucket}/{key}"),
            None => format!("s3://{bucket}"),
        };
        let code = err.code().unwrap_or("").to_string();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let detail = DisplayErrorContext(&err).to_string();
        match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => {
                return ObjectError::Unavailable(format!("S3 {op} on {target}: {detail}"));
            }
            SdkError::ConstructionFailure(_) => {
                return ObjectError::Internal(format!("building S3 {op} on {target}: {detail}"));
            }
            _ => {}
        }
        match code.as_str() {
            "NoSuchBucket" => ObjectError::NotReady(format!(
                "bucket {bucket} does not exist; create it (`aws s3 mb s3://{bucket}`, or \
                 object_source::create_bucket(\"s3://{bucket}\"))"
            )),
            "NoSuchKey" | "NotFound" => ObjectError::NotFound(target),
            "SlowDown"
            | "ServiceUnavailable"
            | "InternalError"
            | "RequestTimeout"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeTooSkewed"
            | "OperationAborted" => {
                ObjectError::Unavailable(format!("S3 {op} on {target} ({code}): {detail}"))
            }
            _ if matches!(status, Some(500 | 502 | 503 | 504)) => {
                ObjectError::Unavailable(format!("S3 {op} on {target} (HTTP {status:?}): {detail}"))
            }
            _ if code.is_empty() && status == Some(404) => ObjectError::NotFound(target),
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" => {
                ObjectError::Internal(format!(
                    "S3 {op} on {target} was refused ({code}); check the credentials and the \
                     bucket policy: {detail}"
                ))
            }
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException" => ObjectError::Internal(format!(
                "S3 {op} on {target} ({code}): the bucket is in another region than the \
                     configured one (set AWS_REGION): {detail}"
            )),
            _ => ObjectError::Internal(format!(
                "S3 {op} on {target} failed ({}): {detail}",
                if code.is_empty() {
                    "no error code"
                } else {
                    &code
                }
            )),
        }
    }

    fn etag(&self, op: &str, key: &str, etag: Option<&str>) -> Result<String> {
        etag.map(|e| strip_etag_quotes(e).to_string())
            .ok_or_else(|| {
                ObjectError::Internal(format!(
                    "S3 {op} on s3://{}/{key} returned no ETag",
                    self.bucket
                ))
            })
    }

    fn size(&self, op: &str, key: &str, size: Option<i64>) -> Result<u64> {
        size.and_then(|n| u64::try_from(n).ok()).ok_or_else(|| {
            ObjectError::Internal(format!(
                "S3 {op} on s3://{}/{key} returned no valid size ({size:?})",
                self.bucket
            ))
        })
    }
}

#[async_trait]
impl ObjectSource for S3Source {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn list(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        page_size: u32,
    ) -> Result<ListPage> {
        let page_size = effective_page_size(page_size);
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(Some(prefix.to_string()).filter(|p| !p.is_empty()))
            .set_continuation_token(continuation.filter(|c| !c.is_empty()).map(str::to_string))
            .max_keys(page_size as i32)
            .send()
            .await
            .map_err(|e| self.sdk_error("ListObjectsV2", None, e))?;
        let mut objects = Vec::with_capacity(out.contents().len());
        for object in out.contents() {
            let key = object.key().ok_or_else(|| {
                ObjectError::Internal(format!(
                    "S3 ListObjectsV2 on s3://{} returned an object without a key",
                    self.bucket
                ))
            })?;
            objects.push(ObjectMeta {
                key: key.to_string(),
                etag: self.etag("ListObjectsV2", key, object.e_tag())?,
                size: self.size("ListObjectsV2", key, object.size())?,
                last_modified_ms: millis(object.last_modified()),
                version_id: None,
            });
        }
        let next = if out.is_truncated() == Some(true) {
            match out.next_continuation_token() {
                Some(token) => Some(token.to_string()),
                None => {
                    return Err(ObjectError::Internal(format!(
                        "S3 ListObjectsV2 on s3://{} says there is more but gave no \
                         continuation token",
                        self.bucket
                    )));
                }
            }
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Object> {
        check_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.sdk_error("GetObject", Some(key), e))?;
        let announced = out.content_length().and_then(|n| u64::try_from(n).ok());
        if let Some(size) = announced.filter(|&size| size > max_bytes) {
            // Dropping the response closes the connection without reading the body.
            return Err(ObjectError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        let etag = self.etag("GetObject", key, out.e_tag())?;
        let last_modified_ms = millis(out.last_modified());
        let version_id = out.version_id().map(str::to_string);
        let mut body: ByteStream = out.body;
        let mut bytes = Vec::with_capacity(crate::initial_capacity(
            announced.unwrap_or(0).min(max_bytes),
        ));
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            ObjectError::Unavailable(format!(
                "S3 GetObject on s3://{}/{key}: reading the body: {}",
                self.bucket,
                DisplayErrorContext(&e)
            ))
        })? {
            let total = (bytes.len() as u64).saturating_add(chunk.len() as u64);
            if total > max_bytes {
                return Err(ObjectError::TooLarge {
                    size: announced.unwrap_or(total).max(total),
                    limit: max_bytes,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if let Some(size) = announced.filter(|&size| size != bytes.len() as u64) {
            return Err(ObjectError::Unavailable(format!(
                "S3 GetObject on s3://{}/{key}: the body had {} of {size} bytes",
                self.bucket,
                bytes.len()
            )));
        }
        Ok(Object {
            meta: ObjectMeta {
                key: key.to_string(),
                etag,
                size: bytes.len() as u64,
                last_modified_ms,
                version_id,
            },
            bytes,
        })
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<ObjectMeta> {
        check_key(key)?;
        let size = bytes.len() as u64;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.sdk_error("PutObject", Some(key), e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            etag: self.etag("PutObject", key, out.e_tag())?,
            size,
            // PutObject does not say; the object's own time is within this request.
            last_modified_ms: now_ms(),
            version_id: out.version_id().map(str::to_string),
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        check_key(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.sdk_error("HeadObject", Some(key), e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            etag: self.etag("HeadObject", key, out.e_tag())?,
            size: self.size("HeadObject", key, out.content_length())?,
            last_modified_ms: millis(out.last_modified()),
            version_id: out.version_id().map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_quotes_are_stripped() {
        assert_eq!(strip_etag_quotes("\"abc\""), "abc");
        assert_eq!(strip_etag_quotes("abc"), "abc");
        assert_eq!(strip_etag_quotes("W/\"abc\""), "abc");
        assert_eq!(strip_etag_quotes("\"abc-2\""), "abc-2");
    }

    #[test]
    fn bucket_names_are_checked() {
        for ok in ["abc", "recipes-in", "a.b-c", "0day"] {
            assert!(check_bucket_name(ok).is_ok(), "{ok:?}");
        }
        for bad in ["ab", "Abc", "abc-", ".abc", "a..b", "a_b", &"a".repeat(64)] {
            assert!(check_bucket_name(bad).is_err(), "{bad:?}");
        }
    }
}
