//! Opaque pagination cursors: the continuation key, base64url-encoded with a kind prefix so a
//! cursor from one listing is refused by another instead of silently misread.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::ApiError;

/// Encodes a continuation key for the listing named `kind`.
pub fn encode(kind: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{key}"))
}

/// Decodes a cursor made by [`encode`] for the same `kind`.
pub fn decode(kind: &str, cursor: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest {
        detail:
            "`cursor` is not a cursor this listing issued; pass `next_cursor` from a previous page"
                .into(),
        errors: Vec::new(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::to_string)
        .ok_or_else(bad)
}

/// Page sizes: default and maximum.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 200;

/// Validates a requested page size.
pub fn limit(requested: Option<u32>) -> Result<u32, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest {
            detail: format!("`limit` {n} is outside 1..={MAX_LIMIT}"),
            errors: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_kind_checked() {
        let c = encode("workflows", "abc");
        assert_eq!(decode("workflows", &c).ok(), Some("abc".to_string()));
        assert!(decode("executions", &c).is_err());
        assert!(decode("workflows", "!!!").is_err());
    }
}
