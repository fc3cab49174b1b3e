//! S3 event notifications, as S3 delivers them to an SQS queue, turned into object references.
//!
//! S3 sends one JSON document per message with a `Records` array (usually one record), a
//! `s3:TestEvent` when the notification is first configured, and — when the notification goes
//! through SNS first — the same document as a string in an SNS envelope's `Message`. Object
//! keys arrive URL-encoded the way HTML forms are (`+` for a space, `%XX` for other bytes).

use serde::Deserialize;

/// One `ObjectCreated:*` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    pub bucket: String,
    /// Decoded.
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub version_id: Option<String>,
    /// `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`, …
    pub event_name: String,
}

/// What one notification message holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notification {
    pub created: Vec<ObjectCreated>,
    /// Records of other events (e.g. `ObjectRemoved:Delete`), by name; nothing to do for them.
    pub other_events: Vec<String>,
    /// S3's `s3:TestEvent`, sent when a notification configuration is saved.
    pub test_event: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("not an S3 event notification: {0}")]
pub struct EventError(String);

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// SNS envelope: the S3 document as a string.
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: BucketEntity,
    object: ObjectEntity,
}

#[derive(Deserialize)]
struct BucketEntity {
    name: String,
}

#[derive(Deserialize)]
struct ObjectEntity {
    key: String,
    #[serde(default)]
    size: u64,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

/// Parses one SQS message body carrying an S3 notification.
pub fn parse(body: &str) -> Result<Notification, EventError> {
    parse_depth(body, 0)
}

fn parse_depth(body: &str, depth: u8) -> Result<Notification, EventError> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| EventError(format!("invalid JSON: {e}")))?;
    if envelope.sns_type.as_deref() == Some("Notification") && depth == 0 {
        let inner = envelope
            .message
            .ok_or_else(|| EventError("SNS notification without a Message".into()))?;
        return parse_depth(&inner, depth + 1);
    }
    if envelope.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Notification {
            test_event: true,
            ..Notification::default()
        });
    }
    let records = envelope
        .records
        .ok_or_else(|| EventError("no Records array".into()))?;
    let mut out = Notification::default();
    for (i, record) in records.into_iter().enumerate() {
        if !record.event_name.starts_with("ObjectCreated:") {
            out.other_events.push(record.event_name);
            continue;
        }
        let s3 = record
            .s3
            .ok_or_else(|| EventError(format!("Records[{i}] has no s3 entity")))?;
        let key = decode_key(&s3.object.key)
            .map_err(|e| EventError(format!("Records[{i}].s3.object.key: {e}")))?;
        let etag = s3
            .object
            .etag
            .filter(|e| !e.is_empty())
            .ok_or_else(|| EventError(format!("Records[{i}] has no eTag")))?;
        out.created.push(ObjectCreated {
            bucket: s3.bucket.name,
            key,
            etag: etag.trim_matches('"').to_string(),
            size: s3.object.size,
            version_id: s3.object.version_id.filter(|v| !v.is_empty()),
            event_name: record.event_name,
        });
    }
    Ok(out)
}

/// Decodes a key as S3 writes it into notifications: form encoding, UTF-8.
pub fn decode_key(encoded: &str) -> Result<String, String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3",
        "awsRegion":"us-east-1","eventTime":"2026-11-28T12:00:00.000Z",
        "eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0",
        "bucket":{"name":"recipes-in","arn":"arn:aws:s3:::recipes-in"},
        "object":{"key":"makes/Sunday+pancakes%C3%A9%2B1.json","size":812,
        "eTag":"9b2cf535f27731c974343645a3985328","versionId":"v1","sequencer":"0A1B"}}}]}"#;

    #[test]
    fn object_created_records_become_references() {
        let n = parse(PUT).unwrap();
        assert_eq!(
            n.created,
            vec![ObjectCreated {
                bucket: "recipes-in".into(),
                key: "makes/Sunday pancakesé+1.json".into(),
                etag: "9b2cf535f27731c974343645a3985328".into(),
                size: 812,
                version_id: Some("v1".into()),
                event_name: "ObjectCreated:Put".into(),
            }]
        );
        assert!(!n.test_event);
    }

    #[test]
    fn test_events_removals_and_sns_envelopes() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-28T12:00:00Z","Bucket":"recipes-in","RequestId":"X","HostId":"Y"}"#;
        assert!(parse(test).unwrap().test_event);
        let removed = PUT.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        let n = parse(&removed).unwrap();
        assert!(n.created.is_empty());
        assert_eq!(n.other_events, vec!["ObjectRemoved:Delete".to_string()]);
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": PUT})
            .to_string();
        assert_eq!(parse(&sns).unwrap().created.len(), 1);
    }

    #[test]
    fn malformed_notifications_say_what_is_wrong() {
        for (body, expect) in [
            ("nope", "invalid JSON"),
            ("{}", "no Records"),
            (
                r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#,
                "no s3 entity",
            ),
            (&PUT.replace("%C3%A9", "%C3"), "not UTF-8"),
            (&PUT.replace("%2B1", "%2"), "percent escape"),
            (
                &PUT.replace(r#""eTag":"9b2cf535f27731c974343645a3985328","#, ""),
                "no eTag",
            ),
        ] {
            let err = parse(body).unwrap_err().to_string();
            assert!(err.contains(expect), "{body}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_undoes_form_encoding(key in "\\PC{0,40}") {
            let encoded: String = key.bytes().map(|b| match b {
                b' ' => "+".to_string(),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            }).collect();
            proptest::prop_assert_eq!(decode_key(&encoded).unwrap(), key);
        }
    }
}
