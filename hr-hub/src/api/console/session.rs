//! Signed-in operators: a session per login, named by a random id that only
//! the operator's browser holds (an `HttpOnly`, `SameSite=Strict` cookie),
//! with its own CSRF token that every form of the console carries back.

use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie that names a session.
pub(super) const COOKIE: &str = "hr_console";
/// How long a session lasts from its login.
pub(super) const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at once: a login beyond it ends the session closest to expiring.
const MAX_SESSIONS: usize = 1024;

/// One operator's session.
#[derive(Clone)]
pub(super) struct Session {
    /// The caller whose token signed in.
    pub(super) caller: String,
    /// What every form of this session must carry back.
    pub(super) csrf: String,
    expires: Instant,
    /// Its place among the logins (sessions end oldest first when there are too many).
    opened: u64,
    /// What the last action said, shown once by the next page.
    flash: Option<Flash>,
}

/// The outcome of an action, shown on the page after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Flash {
    /// Whether the action did what was asked.
    pub(super) ok: bool,
    /// What to tell the operator.
    pub(super) text: String,
}

/// Every open session, by id.
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    logins: std::sync::atomic::AtomicU64,
}

/// 256 random bits from the thread's CSPRNG, as hex.
fn secret() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

impl Sessions {
    /// Opens a session for `caller` (at most [`MAX_SESSIONS`]: beyond, the oldest ends); returns its id.
    pub(super) fn open(&self, caller: &str) -> String {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS {
            if let Some(oldest) = open.iter().min_by_key(|(_, s)| s.opened).map(|(id, _)| id.clone()) {
                open.remove(&oldest);
            }
        }
        let id = secret();
        let opened = self.logins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        open.insert(id.clone(), Session { caller: caller.to_string(), csrf: secret(), expires: now + LIFETIME, opened, flash: None });
        id
    }

    /// The session `id` names, if it is open and has not expired.
    pub(super) fn get(&self, id: &str) -> Option<Session> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Ends session `id`.
    pub(super) fn close(&self, id: &str) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Keeps `flash` for the next page of session `id`.
    pub(super) fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(session) = self.open.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            session.flash = Some(flash);
        }
    }

    /// Takes what session `id` was to be told, once.
    pub(super) fn take_flash(&self, id: &str) -> Option<Flash> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id).and_then(|s| s.flash.take())
    }
}

/// The session id a request's `Cookie` header carries, if any.
pub(super) fn session_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// The `Set-Cookie` value that hands a browser session `id` (`None`: ends
/// it). `secure` adds `Secure`, for a console served over HTTPS.
pub(super) fn set_cookie(id: Option<&str>, secure: bool) -> String {
    let max_age = if id.is_some() { LIFETIME.as_secs() as i64 } else { 0 };
    cookie::Cookie::build((COOKIE, id.unwrap_or("").to_string()))
        .path("/ui")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_alone_and_ends_when_closed() {
        let sessions = Sessions::default();
        let id = sessions.open("hr-lead");
        let other = sessions.open("hr-lead");
        assert_ne!(id, other, "each login has its own id");
        assert_eq!(id.len(), 64, "256 bits");
        let session = sessions.get(&id).unwrap();
        assert_eq!(session.caller, "hr-lead");
        assert_ne!(session.csrf, sessions.get(&other).unwrap().csrf, "each session has its own CSRF token");
        assert!(sessions.get("not-a-session").is_none());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        assert!(sessions.get(&other).is_some());
    }

    #[test]
    fn a_flash_is_shown_once() {
        let sessions = Sessions::default();
        let id = sessions.open("hr-lead");
        sessions.set_flash(&id, Flash { ok: true, text: "approved".into() });
        assert_eq!(sessions.take_flash(&id).map(|f| f.text), Some("approved".into()));
        assert_eq!(sessions.take_flash(&id), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.open("a");
        for _ in 0..MAX_SESSIONS {
            sessions.open("a");
        }
        assert_eq!(sessions.open.lock().unwrap().len(), MAX_SESSIONS);
        assert!(sessions.get(&first).is_none(), "the oldest ended");
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_console() {
        let set = set_cookie(Some("abc"), true);
        for part in ["hr_console=abc", "HttpOnly", "SameSite=Strict", "Path=/ui", "Secure", "Max-Age=28800"] {
            assert!(set.contains(part), "{set} lacks {part}");
        }
        assert!(!set_cookie(Some("abc"), false).contains("Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(axum::http::header::COOKIE, "other=1; hr_console=abc".parse().unwrap());
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
    }
}
