//! Bearer tokens: how strong one must be, how one is compared, and how a
//! caller without one is answered.
//!
//! Every HTTP surface of the library (the receiver, the hub's API, a
//! receiver's `/metrics`) checks tokens here and answers errors in the same
//! JSON shape, so the rules live once.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An error answer in the shape every HTTP surface of the library uses:
/// `{"error": code, "message": message}` with `status`.
pub fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({"error": code, "message": message.into()}))).into_response()
}

/// The answer to a call without a valid bearer token: 401 `unauthorized`
/// with `WWW-Authenticate: Bearer` and `message` (say which token is wanted,
/// never what was presented).
pub fn unauthorized(message: &str) -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The fewest bytes a bearer token may have: 32, as many as a random
/// 256-bit key, so a token cannot be guessed by trying (generate one with
/// `openssl rand -hex 32`).
pub const MIN_TOKEN_BYTES: usize = 32;

/// A token too short to be secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{whose} bearer token has {bytes} bytes; use at least {min} random bytes (for example the output of `openssl rand -hex 32`)",
    min = MIN_TOKEN_BYTES
)]
pub struct WeakToken {
    /// Whose token it is ("the receiver's", "caller hr-portal's").
    pub whose: String,
    /// Its length (blanks at either end not counted).
    pub bytes: usize,
}

/// Checks that `token` (whose: for the message) is long enough to be a
/// secret; blanks at either end do not count.
///
/// ```
/// use hr_transport_rest::check_token_strength;
/// assert!(check_token_strength("the receiver's", "s3cret").is_err());
/// assert!(check_token_strength("the receiver's", "4f9c0a6b2e8d17f3a5c9e0b4d6f1a2c8").is_ok());
/// ```
pub fn check_token_strength(whose: &str, token: &str) -> Result<(), WeakToken> {
    let bytes = token.trim().len();
    if bytes < MIN_TOKEN_BYTES {
        return Err(WeakToken { whose: whose.into(), bytes });
    }
    Ok(())
}

/// The credentials of a `Bearer` authorization; the scheme is case-insensitive (RFC 9110 11.1).
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim_start_matches(' '))
}

/// Whether a request's `Authorization: Bearer` token is `expected`.
///
/// The SHA-256 digests of both are compared in constant time: comparing the
/// tokens themselves would answer at once when the lengths differ, and so
/// tell a caller how long the token is.
pub fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    token_matches(presented_token(headers).unwrap_or(""), expected)
}

/// Whether a secret presented some other way (a login form, a CSRF field)
/// is `expected`, compared as [`bearer_matches`] compares tokens: in
/// constant time, whatever the lengths.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented.as_slice().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_exact_token_matches_whatever_the_scheme_case() {
        let token = "0123456789abcdef0123456789abcdef";
        assert!(bearer_matches(&with(&format!("Bearer {token}")), token));
        assert!(bearer_matches(&with(&format!("bearer {token}")), token));
        assert!(!bearer_matches(&with(&format!("Bearer {token}x")), token));
        assert!(!bearer_matches(&with(&format!("Bearer {}", &token[..31])), token));
        assert!(!bearer_matches(&with(&format!("Basic {token}")), token));
        assert!(!bearer_matches(&HeaderMap::new(), token));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k"] {
            assert_eq!(presented_token(&with(value)), Some("t0k"), "{value}");
        }
        assert_eq!(presented_token(&with("Basic t0k")), None);
        assert_eq!(presented_token(&with("Bearert0k")), None);
    }

    #[test]
    fn a_token_needs_32_bytes_not_counting_blanks() {
        assert_eq!(check_token_strength("x's", &"a".repeat(31)), Err(WeakToken { whose: "x's".into(), bytes: 31 }));
        assert_eq!(check_token_strength("x's", &format!("  {}  ", "a".repeat(31))).unwrap_err().bytes, 31);
        assert!(check_token_strength("x's", &"a".repeat(32)).is_ok());
        let message = check_token_strength("caller hr-portal's", "").unwrap_err().to_string();
        assert!(message.contains("caller hr-portal's") && message.contains("at least 32"), "{message}");
    }
}
