//! Checks and conversions both backends share, so that a request one backend accepts the other
//! accepts too: message and argument validation (with the SQS rules as the common ground),
//! dead-letter reasons, and the clock.

use crate::{
    MAX_ATTRIBUTES, MAX_MESSAGE_BYTES, MAX_REASON_CHARS, MAX_RECEIVE_MESSAGES, MAX_VISIBILITY,
    MAX_WAIT, OutgoingMessage, QueueError, RESERVED_ATTRIBUTE_PREFIX, Result,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The SQS data type every attribute is sent as; counted in the message size.
pub(crate) const STRING_TYPE: &str = "String";

/// Wall-clock time in milliseconds since the Unix epoch. Wall clock rather than a monotonic
/// one because processes sharing the embedded queue compare these numbers.
pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is broken; treat it as the epoch rather than panicking.
        Err(_) => 0,
    }
}

/// Milliseconds of a duration already checked against [`MAX_VISIBILITY`] or [`MAX_WAIT`].
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whole seconds, rounded up (SQS takes seconds). Only for checked durations.
pub(crate) fn ceil_secs(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// Characters SQS accepts in bodies and attribute values.
fn allowed_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Bytes a message counts against [`MAX_MESSAGE_BYTES`].
pub(crate) fn message_size(m: &OutgoingMessage) -> usize {
    m.body.len()
        + m.attributes
            .iter()
            .map(|(k, v)| k.len() + STRING_TYPE.len() + v.len())
            .sum::<usize>()
}

fn check_attribute_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 256 {
        return Err(format!(
            "attribute name {name:?} must be 1 to 256 bytes long"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "attribute name {name:?} may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(format!(
            "attribute name {name:?} may not start or end with '.' or contain '..'"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        return Err(format!(
            "attribute name {name:?} uses a prefix reserved by AWS"
        ));
    }
    if lower.starts_with(RESERVED_ATTRIBUTE_PREFIX) {
        return Err(format!(
            "attribute name {name:?} uses the prefix {RESERVED_ATTRIBUTE_PREFIX:?}, which the \
             queue reserves for dead-lettering"
        ));
    }
    Ok(())
}

fn check_message(m: &OutgoingMessage) -> std::result::Result<(), String> {
    if m.body.is_empty() {
        return Err("the body is empty".into());
    }
    if let Some(c) = m.body.chars().find(|c| !allowed_char(*c)) {
        return Err(format!(
            "the body contains the character {c:?}, which SQS refuses"
        ));
    }
    if m.attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "{} attributes, at most {MAX_ATTRIBUTES} are allowed",
            m.attributes.len()
        ));
    }
    for (name, value) in &m.attributes {
        check_attribute_name(name)?;
        if value.is_empty() {
            return Err(format!("attribute {name:?} has an empty value"));
        }
        if let Some(c) = value.chars().find(|c| !allowed_char(*c)) {
            return Err(format!(
                "attribute {name:?} contains the character {c:?}, which SQS refuses"
            ));
        }
    }
    let size = message_size(m);
    if size > MAX_MESSAGE_BYTES {
        return Err(format!(
            "{size} bytes (body and attributes), at most {MAX_MESSAGE_BYTES} are allowed"
        ));
    }
    Ok(())
}

/// Refuses the whole batch if any message would be refused, naming every bad one.
pub(crate) fn check_messages(messages: &[OutgoingMessage]) -> Result<()> {
    let problems: Vec<String> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| check_message(m).err().map(|e| format!("message {i}: {e}")))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(QueueError::Invalid(format!(
            "nothing sent; {} of {} messages are not acceptable: {}",
            problems.len(),
            messages.len(),
            problems.join("; ")
        )))
    }
}

pub(crate) fn check_receive(max: u32, wait: Duration, visibility: Duration) -> Result<()> {
    if !(1..=MAX_RECEIVE_MESSAGES).contains(&max) {
        return Err(QueueError::Invalid(format!(
            "receive: max must be 1..={MAX_RECEIVE_MESSAGES}, not {max}"
        )));
    }
    if wait > MAX_WAIT {
        return Err(QueueError::Invalid(format!(
            "receive: wait must be at most {}s, not {wait:?}",
            MAX_WAIT.as_secs()
        )));
    }
    check_duration("receive: visibility", visibility)
}

/// A visibility timeout or delay: at most [`MAX_VISIBILITY`].
pub(crate) fn check_duration(what: &str, d: Duration) -> Result<()> {
    if d > MAX_VISIBILITY {
        return Err(QueueError::Invalid(format!(
            "{what} must be at most {}s, not {d:?}",
            MAX_VISIBILITY.as_secs()
        )));
    }
    Ok(())
}

/// The reason as stored: trimmed, characters SQS refuses replaced, cut at [`MAX_REASON_CHARS`].
/// An empty reason is refused: a dead letter without one helps nobody.
pub(crate) fn clean_reason(reason: &str) -> Result<String> {
    let trimmed = reason.trim();
    if trimmed.is_empty() {
        return Err(QueueError::Invalid(
            "dead_letter needs a reason saying why the message failed".into(),
        ));
    }
    let mut out: String = trimmed
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if allowed_char(c) { c } else { '\u{FFFD}' })
        .collect();
    if trimmed.chars().nth(MAX_REASON_CHARS).is_some() {
        out.pop();
        out.push('…');
    }
    Ok(out)
}

/// The one result of a batch call made for a single receipt (`delete` through `delete_batch`).
pub(crate) fn single(mut results: Vec<Result<()>>) -> Result<()> {
    match (results.pop(), results.is_empty()) {
        (Some(result), true) => result,
        (got, _) => Err(QueueError::Internal(format!(
            "a batch of one receipt returned {} results",
            results.len() + usize::from(got.is_some())
        ))),
    }
}

/// Dead letters one `dead_letters(max)` call returns.
pub(crate) fn peek_limit(max: u32) -> u32 {
    max.min(crate::MAX_DEAD_LETTER_PEEK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn messages_follow_the_sqs_rules() {
        let ok = OutgoingMessage::new("{}").with_attribute("traceparent", "00-ab-cd-01");
        assert!(check_messages(std::slice::from_ref(&ok)).is_ok());
        let bad = [
            OutgoingMessage::new(""),
            OutgoingMessage::new("a\u{0}b"),
            OutgoingMessage::new("x").with_attribute("bad name", "v"),
            OutgoingMessage::new("x").with_attribute("AWS.thing", "v"),
            OutgoingMessage::new("x").with_attribute("dead-letter-reason", "v"),
            OutgoingMessage::new("x").with_attribute("a..b", "v"),
            OutgoingMessage::new("x").with_attribute("empty", ""),
            OutgoingMessage::new("x".repeat(MAX_MESSAGE_BYTES + 1)),
        ];
        for m in bad {
            let err = check_messages(&[ok.clone(), m.clone()]);
            assert!(
                matches!(&err, Err(QueueError::Invalid(e)) if e.contains("message 1")),
                "{m:?}: {err:?}"
            );
        }
        let mut many = OutgoingMessage::new("x");
        for i in 0..=MAX_ATTRIBUTES {
            many.attributes.insert(format!("a{i}"), "v".into());
        }
        assert!(check_messages(&[many]).is_err());
    }

    #[test]
    fn receive_arguments_are_bounded() {
        let s = Duration::from_secs(1);
        assert!(check_receive(1, s, s).is_ok());
        assert!(check_receive(10, MAX_WAIT, MAX_VISIBILITY).is_ok());
        assert!(check_receive(0, s, s).is_err());
        assert!(check_receive(11, s, s).is_err());
        assert!(check_receive(1, MAX_WAIT + s, s).is_err());
        assert!(check_receive(1, s, MAX_VISIBILITY + s).is_err());
    }

    #[test]
    fn reasons_are_cleaned() {
        assert!(clean_reason("  ").is_err());
        assert_eq!(
            clean_reason(" bad\u{1} json ").ok().as_deref(),
            Some("bad\u{FFFD} json")
        );
        let long = "é".repeat(MAX_REASON_CHARS + 5);
        let cut = clean_reason(&long).unwrap_or_default();
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(MAX_REASON_CHARS);
        assert_eq!(clean_reason(&exact).ok(), Some(exact));
    }
}
