//! `sender dead-letters`: the operator's view of the dead letters on either queue backend, one
//! JSON object per line (so `jq` can filter it), without consuming them.

use crate::config::DeadLetterSettings;
use anyhow::Context;
use message_queue::DeadLetter;
use serde_json::{Value, json};
use std::io::Write;

/// Writes up to `settings.max` dead letters to `out`; returns how many.
pub async fn print(settings: &DeadLetterSettings, out: &mut impl Write) -> anyhow::Result<usize> {
    let queue = message_queue::open(&settings.queue)
        .await
        .with_context(|| format!("opening queue {}", settings.queue))?;
    let letters = queue
        .dead_letters(settings.max)
        .await
        .with_context(|| format!("reading the dead letters of {}", settings.queue))?;
    for letter in &letters {
        let line = serde_json::to_string(&to_json(letter)).context("encoding a dead letter")?;
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(letters.len())
}

/// `{messageId, reason, receiveCount, deadAt (RFC 3339), deadAtMs, attributes, body, job}`;
/// `job` is the body parsed as JSON when it is JSON (null otherwise), for easy filtering.
pub fn to_json(letter: &DeadLetter) -> Value {
    let job = serde_json::from_str::<Value>(&letter.body).unwrap_or(Value::Null);
    json!({
        "messageId": letter.message_id,
        "reason": letter.reason,
        "receiveCount": letter.receive_count,
        "deadAt": rfc3339_from_ms(letter.dead_at_ms),
        "deadAtMs": letter.dead_at_ms,
        "attributes": letter.attributes,
        "body": letter.body,
        "job": job,
    })
}

/// `2026-01-31T12:34:56.789Z` for milliseconds since the Unix epoch (UTC, proleptic Gregorian).
pub fn rfc3339_from_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_from_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_ms(1_764_000_000_123),
            "2025-11-24T16:00:00.123Z"
        );
        assert_eq!(rfc3339_from_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn lines_carry_the_reason_and_the_parsed_job() {
        let letter = DeadLetter {
            message_id: "m1".into(),
            body: r#"{"v":1}"#.into(),
            attributes: Default::default(),
            reason: "not a job: missing field `kind`".into(),
            dead_at_ms: 0,
            receive_count: 2,
        };
        let v = to_json(&letter);
        assert_eq!(v["reason"], "not a job: missing field `kind`");
        assert_eq!(v["receiveCount"], 2);
        assert_eq!(v["job"]["v"], 1);
        let not_json = DeadLetter {
            body: "hello".into(),
            ..letter
        };
        assert_eq!(to_json(&not_json)["job"], Value::Null);
    }
}
