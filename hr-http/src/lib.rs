//! # hr-http
//!
//! What every HTTP transport of the hub (`hr-transport-rest`,
//! `hr-transport-scim`) checks about the peers it calls, written once: a
//! target is outside the hub, so nothing it says is believed unchecked.
//!
//! - [`check_target_url`]: `http://` only to loopback unless the target's
//!   configuration allows it, so tokens and records do not cross a network
//!   in clear by accident.
//! - [`read_bounded`]: an answer's body up to a limit; a target cannot make
//!   the hub hold more of it.
//! - [`retry_after`]: a `Retry-After` in seconds, as a [`Duration`] callers
//!   compare with the time they have left (never add to an instant: a
//!   target may send `u64::MAX`).
//! - [`client_builder`]: a client that follows no redirect (a redirect
//!   could carry the bearer token and the records elsewhere).
//!
//! ```
//! use hr_http::{check_target_url, UrlProblem};
//! assert!(check_target_url("https://payroll.example/hr", false).is_ok());
//! assert!(check_target_url("http://127.0.0.1:8080", false).is_ok());
//! assert_eq!(check_target_url("http://payroll.example", false), Err(UrlProblem::Insecure));
//! assert!(check_target_url("http://payroll.example", true).is_ok());
//! ```

#![warn(missing_docs, unreachable_pub)]

use std::time::Duration;

/// Why a target's URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlProblem {
    /// Plain `http://` to a host that is not loopback, and the target does not allow it.
    #[error("plain http to a host that is not loopback, so its token and records would cross the network in clear; use https, or set allow_insecure_http = true for this target")]
    Insecure,
    /// Not a URL the client can call.
    #[error("{0}")]
    Invalid(String),
}

/// Checks that `url` is an `http(s)` URL with a host, and `http://` only to
/// loopback unless `allow_insecure_http`.
pub fn check_target_url(url: &str, allow_insecure_http: bool) -> Result<(), UrlProblem> {
    let parsed = url::Url::parse(url).map_err(|e| UrlProblem::Invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" if parsed.host().is_some_and(|host| !is_loopback(&host)) && !allow_insecure_http => Err(UrlProblem::Insecure),
        "http" | "https" if parsed.host().is_some() => Ok(()),
        "http" | "https" => Err(UrlProblem::Invalid("it has no host".into())),
        other => Err(UrlProblem::Invalid(format!("scheme {other} is neither http nor https"))),
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// A client builder for calling targets: no redirects, `timeout` per request.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(timeout).pool_max_idle_per_host(8).tcp_nodelay(true).redirect(reqwest::redirect::Policy::none())
}

/// A `Retry-After` in seconds, as the target sent it (HTTP dates are not
/// honoured: the caller's backoff applies). Any number: compare it with the
/// time left, never add it to an instant.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

/// The answer's body, up to `limit` bytes: a target cannot make the hub
/// hold more of it than that.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("an answer of {} bytes, over the {limit}-byte limit", response.content_length().unwrap_or_default()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("answer not read: {}", root_cause(&e)))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("an answer over the {limit}-byte limit"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The innermost cause of `e`: what a person can act on ("connection
/// refused"), without the layers around it.
pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_without_host_or_of_other_schemes_are_invalid() {
        assert!(matches!(check_target_url("ftp://x.example", true), Err(UrlProblem::Invalid(m)) if m.contains("ftp")));
        assert!(matches!(check_target_url("not a url", true), Err(UrlProblem::Invalid(_))));
        assert!(check_target_url("http://localhost:1", false).is_ok());
        assert!(check_target_url("http://[::1]:1", false).is_ok());
        assert_eq!(check_target_url("http://10.0.0.1", false), Err(UrlProblem::Insecure));
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "18446744073709551615".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(u64::MAX)));
        headers.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
