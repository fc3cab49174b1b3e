//! Pieces both backends share so that they behave identically: write fingerprints, opaque page
//! tokens, JSON (de)serialisation of stored documents with contextual errors, and the checks a
//! make must pass before either backend stores it.

use crate::{NewMake, Result, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use recipe_model::Recipe;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Fingerprint of a recipe write: what an idempotency key is bound to. Two writes with the same
/// key are the same request only if their documents are canonically equal.
pub(crate) fn recipe_fingerprint(recipe: &Recipe) -> String {
    let mut h = Sha256::new();
    h.update(b"recipe-write\0");
    h.update(recipe.canonical_json());
    hex::encode(h.finalize())
}

/// Fingerprint of a make: the canonical make document and the recipe it was recorded against.
/// The recipe id is length-prefixed so that no two (id, document) pairs hash the same input.
pub(crate) fn make_fingerprint(make: &NewMake) -> String {
    let mut h = Sha256::new();
    h.update(b"make\0");
    h.update((make.recipe_id.len() as u64).to_be_bytes());
    h.update(make.recipe_id.as_bytes());
    h.update(make.make.canonical_json());
    hex::encode(h.finalize())
}

/// Refuses makes that would break the idempotency guarantees or the ordering of `list_makes`.
pub(crate) fn check_new_make(make: &NewMake) -> Result<()> {
    let expected = crate::make_id_for_key(&make.idempotency_key);
    if make.make_id != expected {
        return Err(StoreError::Internal(format!(
            "make id {:?} was not derived from its idempotency key (expected {expected:?}); \
             build it with recipe_store::make_id_for_key",
            make.make_id
        )));
    }
    if make.recorded_at_ms < 0 {
        return Err(StoreError::Internal(format!(
            "make {}: recorded_at_ms {} is before the Unix epoch",
            make.make_id, make.recorded_at_ms
        )));
    }
    Ok(())
}

/// Serialises a value the store keeps as a JSON document.
/// The error for a make diffed against `make.recipe_version` while `latest` is newer.
pub(crate) fn stale(make: &NewMake, latest: u32) -> StoreError {
    StoreError::Stale(format!(
        "recipe {} is at version {latest}, the make was compared with version {}",
        make.recipe_id, make.recipe_version
    ))
}

pub(crate) fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Internal(format!("cannot serialise {what}: {e}")))
}

/// Parses a stored JSON document; a failure means the stored data is damaged.
pub(crate) fn from_json<T: DeserializeOwned>(what: &str, json: &str) -> Result<T> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Internal(format!("stored {what} is not valid: {e}")))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEnvelope<T> {
    /// Which list (and backend) issued the token, so that a token is never silently accepted by
    /// another list.
    k: String,
    v: T,
}

/// Encodes the position after the last returned item as an opaque, URL-safe token.
pub(crate) fn encode_page_token<T: Serialize>(kind: &str, position: &T) -> Result<String> {
    let json = serde_json::to_vec(&TokenEnvelope {
        k: kind.to_string(),
        v: position,
    })
    .map_err(|e| StoreError::Internal(format!("cannot encode page token: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a token issued by [`encode_page_token`] with the same `kind`. An empty token means
/// "from the start", as in the usual list-call conventions.
pub(crate) fn decode_page_token<T: DeserializeOwned>(
    kind: &str,
    token: Option<&str>,
) -> Result<Option<T>> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| StoreError::InvalidPageToken("not a token issued by this store".into()))?;
    let envelope: TokenEnvelope<serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|_| StoreError::InvalidPageToken("not a token issued by this store".into()))?;
    if envelope.k != kind {
        return Err(StoreError::InvalidPageToken(format!(
            "the token belongs to another list ({:?}, expected {kind:?})",
            envelope.k
        )));
    }
    serde_json::from_value(envelope.v)
        .map(Some)
        .map_err(|e| StoreError::InvalidPageToken(format!("damaged token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pos {
        id: String,
    }

    #[test]
    fn page_tokens_round_trip_and_are_url_safe() {
        let pos = Pos {
            id: "a/b+c?d".into(),
        };
        let token = encode_page_token("t.kind", &pos).unwrap();
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let back: Option<Pos> = decode_page_token("t.kind", Some(&token)).unwrap();
        assert_eq!(back, Some(pos));
        assert_eq!(decode_page_token::<Pos>("t.kind", Some("")).unwrap(), None);
        assert_eq!(decode_page_token::<Pos>("t.kind", None).unwrap(), None);
    }

    #[test]
    fn foreign_or_damaged_tokens_are_refused() {
        let token = encode_page_token("t.kind", &Pos { id: "x".into() }).unwrap();
        for (kind, token) in [
            ("other.kind", token.as_str()),
            ("t.kind", "%%%"),
            ("t.kind", "bm90IGpzb24"),
        ] {
            assert!(matches!(
                decode_page_token::<Pos>(kind, Some(token)),
                Err(StoreError::InvalidPageToken(_))
            ));
        }
        let wrong_shape = encode_page_token("t.kind", &serde_json::json!({"id": 5})).unwrap();
        assert!(matches!(
            decode_page_token::<Pos>("t.kind", Some(&wrong_shape)),
            Err(StoreError::InvalidPageToken(_))
        ));
    }
}
