use async_trait::async_trait;
use hr_core::{
    ChangeEnvelope, DataType, Digest, DigestEntry, FieldScope, PropagateError, PropagationReport, Propagator, ReadBackError, Receipt, RecordScope, Sensitive,
    TargetFailure, TargetReader,
};
use hr_http::{read_bounded, retry_after, root_cause};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// One target system reachable over HTTP.
#[derive(Debug, Clone)]
pub struct RestTarget {
    /// System name (reports and errors use it).
    pub name: String,
    /// Base URL, e.g. `https://payroll.internal:8443`.
    pub base_url: String,
    /// Bearer token; redacted in `Debug`.
    pub token: Option<Sensitive<String>>,
    /// The data types it may receive; others are never sent to it.
    pub data_types: Vec<DataType>,
    /// Whether it receives every grant; otherwise only the grants for
    /// itself (see [`RecordScope`]).
    pub all_grants: bool,
    /// The fields it goes without: they are removed before sending.
    pub fields: FieldScope,
    /// Lets an `http://` URL name a host that is not loopback, so the token
    /// and the records cross the network in clear (off by default).
    pub allow_insecure_http: bool,
}

impl RestTarget {
    /// A target without a token.
    pub fn new(name: &str, base_url: &str, data_types: Vec<DataType>) -> Self {
        RestTarget {
            name: name.into(),
            base_url: base_url.trim_end_matches('/').into(),
            token: None,
            data_types,
            all_grants: false,
            fields: FieldScope::full(),
            allow_insecure_http: false,
        }
    }

    /// Lets an `http://` URL name a host that is not loopback (see
    /// [`allow_insecure_http`](Self::allow_insecure_http)).
    pub fn with_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Whether its URL can be used: absolute, `http` or `https`, with a
    /// host, and `http` only to a loopback host unless
    /// [`allow_insecure_http`](Self::allow_insecure_http).
    ///
    /// ```
    /// use hr_transport_rest::RestTarget;
    /// assert!(RestTarget::new("erp", "https://erp.internal:8443", vec![]).check_url().is_ok());
    /// assert!(RestTarget::new("erp", "http://127.0.0.1:8083", vec![]).check_url().is_ok());
    /// assert!(RestTarget::new("erp", "http://erp.internal:8083", vec![]).check_url().is_err());
    /// assert!(RestTarget::new("erp", "http://erp.internal:8083", vec![]).with_insecure_http(true).check_url().is_ok());
    /// ```
    pub fn check_url(&self) -> Result<(), RestTransportError> {
        check_base_url(self)
    }

    /// Lets it receive every grant, not only those for itself (an access-review tool).
    pub fn with_all_grants(mut self, all_grants: bool) -> Self {
        self.all_grants = all_grants;
        self
    }

    /// Makes it go without the fields `fields` omits.
    pub fn with_fields(mut self, fields: FieldScope) -> Self {
        self.fields = fields;
        self
    }

    /// Which records of its data types it receives, and which fields.
    pub fn scope(&self) -> RecordScope {
        RecordScope::new(&self.name, self.all_grants).with_fields(self.fields.clone())
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(Sensitive::new(token.into()));
        self
    }
}

/// Targets and delivery rules.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Where to send.
    pub targets: Vec<RestTarget>,
    /// Changes per request (default 1,000).
    pub batch_size: usize,
    /// Overall deadline of one `propagate` call (default 30 s).
    pub deadline: Duration,
    /// Timeout of one HTTP request (default 10 s).
    pub request_timeout: Duration,
    /// First retry delay; doubles each time, with jitter (default 50 ms).
    pub initial_backoff: Duration,
    /// PEM of an extra CA to trust (a private PKI).
    pub ca_pem: Option<Vec<u8>>,
    /// The most a target's answer to a read (digests, entries) may hold
    /// (default 512 MiB: the entries of a million records are about 100 MiB).
    /// A longer answer is that target's error.
    pub max_read_answer_bytes: usize,
}

impl RestConfig {
    /// Defaults for the given targets.
    pub fn new(targets: Vec<RestTarget>) -> Self {
        RestConfig {
            targets,
            batch_size: 1_000,
            deadline: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(50),
            ca_pem: None,
            max_read_answer_bytes: 512 << 20,
        }
    }
}

/// Errors building the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestTransportError {
    /// A target's base URL is not an absolute `http` or `https` URL.
    #[error("target {target}: {url:?} is not a usable base URL ({cause}); write it as http://host:port or https://host:port")]
    InvalidUrl {
        /// The target.
        target: String,
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        cause: String,
    },
    /// A target's URL is plain `http://` to a host that is not loopback.
    #[error(
        "target {target}: {url} is plain http to a host that is not loopback, so its token and records would cross the network in clear; \
         use https, or set allow_insecure_http = true for this target"
    )]
    InsecureUrl {
        /// The target.
        target: String,
        /// The URL as configured.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The CA certificate is not usable PEM.
    #[error("the configured CA certificate is not usable: {0}")]
    Ca(String),
    /// No target of that name is configured.
    #[error("no REST target named {0:?} is configured")]
    UnknownTarget(String),
    /// A target's digests could not be read.
    #[error("cannot read the digests of target {target}: {cause}")]
    Digest {
        /// The target.
        target: String,
        /// What went wrong.
        cause: String,
    },
}

/// Sends batches to every target concurrently and returns only when each
/// applied everything it may receive.
pub struct RestPropagator {
    client: reqwest::Client,
    config: RestConfig,
    stale: Mutex<BTreeMap<String, u64>>,
}

/// How one request ended.
enum Attempt {
    /// The target holds every change, `stale` of them at a version at least as new already.
    Applied {
        stale: u64,
    },
    Retry(String, Option<Duration>),
    Fatal(String),
}

impl RestPropagator {
    /// Builds the HTTP client (rustls).
    pub fn new(config: RestConfig) -> Result<Self, RestTransportError> {
        config.targets.iter().try_for_each(check_base_url)?;
        // A target answers where it is; a redirect could carry the bearer token and pay records elsewhere.
        let mut builder = hr_http::client_builder(config.request_timeout);
        if let Some(pem) = &config.ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| RestTransportError::Ca(e.to_string()))?;
            if certificates.is_empty() {
                return Err(RestTransportError::Ca("no \"BEGIN CERTIFICATE\" block in it".into()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(RestPropagator { client: builder.build().map_err(RestTransportError::Client)?, config, stale: Mutex::new(BTreeMap::new()) })
    }

    /// Changes each target answered as stale since this propagator was
    /// built: delivered (they count in the report) but not applied, because
    /// the target already held that version or a newer one. Repeats and
    /// late batches are stale by design; stale changes the hub did not
    /// expect mean the target holds versions the hub never sent.
    pub fn stale_counts(&self) -> BTreeMap<String, u64> {
        self.stale.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn count_stale(&self, target: &str, stale: u64) {
        if stale > 0 {
            tracing::debug!(target = %target, stale, "target answered changes as stale");
            *self.stale.lock().unwrap_or_else(|p| p.into_inner()).entry(target.to_string()).or_default() += stale;
        }
    }

    /// Reads a target's digests (`GET /hr/v1/digest`) for reconciliation:
    /// equal to the hub's ledger digests means it holds exactly the hub's state.
    /// The receiver answers from the digests it maintains where it applies
    /// changes; [`rescanned_digests`](Self::rescanned_digests) makes it read everything.
    pub async fn digests(&self, target: &str) -> Result<BTreeMap<DataType, Digest>, RestTransportError> {
        self.get_json(target, crate::DIGEST_PATH.to_string()).await
    }

    /// [`digests`](Self::digests) read and hashed from everything the
    /// target holds now (`?scan=full`, see [`hr_core::Sink::rescan`]).
    pub async fn rescanned_digests(&self, target: &str) -> Result<BTreeMap<DataType, Digest>, RestTransportError> {
        self.get_json(target, format!("{}?scan=full", crate::DIGEST_PATH)).await
    }

    /// One data type's digest per key bucket ([`hr_core::BUCKETS`] of them) as
    /// the target holds it: where the target differs, without reading it all.
    pub async fn bucket_digests(&self, target: &str, data_type: DataType) -> Result<Vec<Digest>, RestTransportError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            buckets: Vec<Digest>,
        }
        let answer: Answer = self.get_json(target, crate::BUCKETS_PATH.replace("{data_type}", data_type.as_str())).await?;
        if answer.buckets.len() != hr_core::BUCKETS {
            return Err(RestTransportError::Digest {
                target: target.into(),
                cause: format!("expected {} bucket digests, got {}", hr_core::BUCKETS, answer.buckets.len()),
            });
        }
        Ok(answer.buckets)
    }

    /// The entries (key, version, content hash) the target holds in `buckets`.
    pub async fn entries(&self, target: &str, data_type: DataType, buckets: &[usize]) -> Result<Vec<DigestEntry>, RestTransportError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            entries: Vec<DigestEntry>,
        }
        let list: Vec<String> = buckets.iter().map(usize::to_string).collect();
        let path = format!("{}?buckets={}", crate::ENTRIES_PATH.replace("{data_type}", data_type.as_str()), list.join(","));
        Ok(self.get_json::<Answer>(target, path).await?.entries)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, target: &str, path: String) -> Result<T, RestTransportError> {
        let t = self.config.targets.iter().find(|t| t.name == target).ok_or_else(|| RestTransportError::UnknownTarget(target.into()))?;
        let failed = |cause: String| RestTransportError::Digest { target: target.into(), cause };
        let mut request = self.client.get(format!("{}{path}", t.base_url));
        if let Some(token) = &t.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| failed(root_cause(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let body = read_bounded(response, self.config.max_read_answer_bytes).await.map_err(failed)?;
        serde_json::from_slice(&body).map_err(|e| failed(format!("unexpected answer: {}", hr_core::describe_json_error(&e))))
    }

    async fn send_once(&self, target: &RestTarget, body: &str, idempotency_key: &str) -> Attempt {
        let mut request = self
            .client
            .post(format!("{}{}", target.base_url, crate::CHANGES_PATH))
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .body(body.to_string());
        if let Some(token) = &target.token {
            request = request.bearer_auth(token.expose());
        }
        match request.send().await {
            Err(e) if e.is_timeout() => Attempt::Retry("request timed out".into(), None),
            // A request that cannot even be built (a malformed URL) fails the same way every time.
            Err(e) if e.is_builder() => Attempt::Fatal(format!("cannot build the request: {}", root_cause(&e))),
            Err(e) if e.is_connect() => Attempt::Retry(format!("cannot connect: {}", root_cause(&e)), None),
            Err(e) => Attempt::Retry(format!("request failed: {}", root_cause(&e)), None),
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers());
                let text = match read_bounded(response, MAX_CHANGES_ANSWER_BYTES).await {
                    Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                    Err(cause) => return Attempt::Retry(format!("HTTP {status}, {cause}"), retry_after),
                };
                let detail: String = text.chars().take(300).collect();
                let answer = ChangesAnswer::parse(&text);
                let (out_of_scope, fields_dropped) = answer.as_ref().map_or((0, 0), |a| (a.out_of_scope, a.fields_dropped));
                // Sent only what its scope admits, yet some was dropped: the two sides' configurations differ.
                if status.is_success() && answer.is_none() {
                    Attempt::Fatal(format!("HTTP {status} with an answer that is not a receiver's (`{{\"applied\": n, \"stale\": m}}`): {detail}"))
                } else if status.is_success() && out_of_scope > 0 {
                    Attempt::Fatal(format!(
                        "the target did not store {out_of_scope} changes as outside its scope (its all_grants setting differs from the hub's)"
                    ))
                } else if status.is_success() && fields_dropped > 0 {
                    Attempt::Fatal(format!(
                        "the target stored {fields_dropped} changes without fields it may not hold (its omit setting differs from the hub's)"
                    ))
                } else if let Some(answer) = answer.filter(|_| status.is_success()) {
                    Attempt::Applied { stale: answer.stale }
                } else if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
                    Attempt::Retry(format!("HTTP {status}: {detail}"), retry_after)
                } else {
                    Attempt::Fatal(format!("HTTP {status}: {detail}"))
                }
            }
        }
    }

    /// Sends every batch to one target in order; stops at the first batch that cannot be applied.
    async fn deliver(&self, target: &RestTarget, batch: &[ChangeEnvelope], deadline: Instant) -> (PropagationReport, Option<TargetFailure>) {
        let mut report = PropagationReport::default();
        let scope = target.scope();
        let mine: Vec<&ChangeEnvelope> = batch.iter().filter(|c| target.data_types.contains(&c.data_type) && scope.admits(c.data_type, &c.key)).collect();
        // One data type per request, so a receiver can count what it applied per data type.
        let chunks: Vec<&[&ChangeEnvelope]> =
            mine.chunk_by(|a, b| a.data_type == b.data_type).flat_map(|run| run.chunks(self.config.batch_size.max(1))).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let scoped: Result<Vec<String>, _> = chunk.iter().map(|c| scope.fields().apply(c).map(|c| c.to_json())).collect();
            let body = match scoped {
                Ok(changes) => format!("[{}]", changes.join(",")),
                Err(e) => {
                    return (
                        report,
                        Some(TargetFailure {
                            target: target.name.clone(),
                            cause: format!("cannot leave out the fields it may not hold: {e}"),
                            retriable: false,
                        }),
                    )
                }
            };
            let ids: String = chunk.iter().map(|c| c.event_id.as_str()).collect::<Vec<_>>().join(",");
            let key = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, ids.as_bytes()).to_string();
            let mut backoff = self.config.initial_backoff;
            let applied_so_far = report.total(&target.name);
            let failure = |cause: String, retriable| {
                Some(TargetFailure {
                    target: target.name.clone(),
                    cause: format!(
                        "batch {} of {} ({} changes) not applied: {cause}; {applied_so_far} of {} changes applied",
                        i + 1,
                        chunks.len(),
                        chunk.len(),
                        mine.len()
                    ),
                    retriable,
                })
            };
            // Said when the deadline passes mid-attempt: why the attempts before it failed.
            let mut last_cause: Option<String> = None;
            loop {
                let attempt = tokio::time::timeout_at(deadline, self.send_once(target, &body, &key)).await;
                match attempt {
                    Err(_) => {
                        let before = last_cause.map(|c| format!(" (the attempt before: {c})")).unwrap_or_default();
                        return (report, failure(format!("deadline of {} ms passed{before}", self.config.deadline.as_millis()), true));
                    }
                    Ok(Attempt::Applied { stale }) => {
                        for c in chunk.iter() {
                            report.add(&target.name, c.data_type, 1);
                        }
                        self.count_stale(&target.name, stale);
                        break;
                    }
                    Ok(Attempt::Fatal(cause)) => return (report, failure(cause, false)),
                    Ok(Attempt::Retry(cause, retry_after)) => {
                        let jitter = jitter();
                        let wait = retry_after.unwrap_or(backoff.mul_f64(jitter));
                        // Compared with what is left, never added to now: a target's Retry-After may be any number.
                        if wait >= deadline.saturating_duration_since(Instant::now()) {
                            let asked = retry_after.map(|w| format!(", asked to retry after {} s", w.as_secs())).unwrap_or_default();
                            return (report, failure(format!("{cause}{asked} (gave up at the {} ms deadline)", self.config.deadline.as_millis()), true));
                        }
                        tracing::debug!(target = %target.name, cause = %cause, wait_ms = wait.as_millis() as u64, "retrying");
                        last_cause = Some(cause);
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        (report, None)
    }
}

impl RestPropagator {
    /// Sends each target `chosen` picks its data types of `batch`, all at once.
    async fn deliver_to(&self, batch: &[ChangeEnvelope], chosen: impl Fn(&RestTarget) -> bool) -> Result<Receipt, PropagateError> {
        let deadline = Instant::now() + self.config.deadline;
        let sends = self.config.targets.iter().filter(|t| chosen(t)).map(|t| self.deliver(t, batch, deadline));
        Receipt::from_targets("rest", futures::future::join_all(sends).await)
    }
}

fn check_base_url(target: &RestTarget) -> Result<(), RestTransportError> {
    hr_http::check_target_url(&target.base_url, target.allow_insecure_http).map_err(|problem| match problem {
        hr_http::UrlProblem::Insecure => RestTransportError::InsecureUrl { target: target.name.clone(), url: target.base_url.clone() },
        other => RestTransportError::InvalidUrl { target: target.name.clone(), url: target.base_url.clone(), cause: other.to_string() },
    })
}

/// The most a receiver's answer to a batch of changes may hold: it is a
/// few counts (`{"applied": n, "stale": m, ...}`) or an error message.
const MAX_CHANGES_ANSWER_BYTES: usize = 64 * 1024;

/// A receiver's answer to a batch it took.
#[derive(serde::Deserialize)]
struct ChangesAnswer {
    #[allow(dead_code)] // Required: an answer without it is not a receiver's.
    applied: u64,
    #[serde(default)]
    stale: u64,
    #[serde(default)]
    out_of_scope: u64,
    #[serde(default)]
    fields_dropped: u64,
}

impl ChangesAnswer {
    /// The answer, if `text` is one.
    fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

#[async_trait]
impl Propagator for RestPropagator {
    /// Sends each target its data types; the receipt is applied on return,
    /// since a target answers only once its sink applied the batch.
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        self.deliver_to(batch, |_| true).await
    }

    /// Sends the named targets alone their data types.
    async fn propagate_to(&self, batch: &[ChangeEnvelope], targets: &BTreeSet<String>) -> Result<Receipt, PropagateError> {
        self.deliver_to(batch, |t| targets.contains(&t.name)).await
    }

    fn field_scope(&self, target: &str) -> FieldScope {
        self.config.targets.iter().find(|t| t.name == target).map(|t| t.fields.clone()).unwrap_or_default()
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        self.config.targets.iter().map(|t| (t.name.clone(), t.data_types.clone())).collect()
    }
}

/// Reads back what each target's receiver holds through its digest endpoints.
#[async_trait]
impl TargetReader for RestPropagator {
    fn readable_targets(&self) -> Vec<String> {
        self.config.targets.iter().map(|t| t.name.clone()).collect()
    }

    async fn entries(&self, target: &str, data_type: DataType, buckets: &[usize]) -> Result<Vec<DigestEntry>, ReadBackError> {
        RestPropagator::entries(self, target, data_type, buckets).await.map_err(|e| ReadBackError::new(target, e))
    }

    /// One request for every data type: the receiver digests what it holds.
    async fn digests(&self, target: &str, data_types: &[DataType]) -> Result<BTreeMap<DataType, Digest>, ReadBackError> {
        let held = RestPropagator::digests(self, target).await.map_err(|e| ReadBackError::new(target, e))?;
        Ok(only(held, data_types))
    }

    async fn rescanned_digests(&self, target: &str, data_types: &[DataType]) -> Result<BTreeMap<DataType, Digest>, ReadBackError> {
        let held = RestPropagator::rescanned_digests(self, target).await.map_err(|e| ReadBackError::new(target, e))?;
        Ok(only(held, data_types))
    }

    async fn bucket_digests(&self, target: &str, data_type: DataType) -> Result<Vec<Digest>, ReadBackError> {
        RestPropagator::bucket_digests(self, target, data_type).await.map_err(|e| ReadBackError::new(target, e))
    }
}

/// The digests of `data_types` among those a receiver answered; a type it holds nothing of has the empty digest.
fn only(mut held: BTreeMap<DataType, Digest>, data_types: &[DataType]) -> BTreeMap<DataType, Digest> {
    data_types.iter().map(|t| (*t, held.remove(t).unwrap_or_default())).collect()
}

/// A backoff factor drawn uniformly from [0.5, 1.5), so targets retried at
/// once do not retry in step: a v4 UUID's first 48 bits, all random (its
/// version and variant bits come later).
fn jitter() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() >> 80) as u64;
    0.5 + bits as f64 / (1u64 << 48) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_whose_url_cannot_be_used_is_refused_naming_it() {
        for url in ["payroll.internal:8443", "ftp://payroll.internal", "http://", "not a url"] {
            let config = RestConfig::new(vec![RestTarget::new("payroll", url, vec![DataType::Employee])]);
            let err = RestPropagator::new(config).err().unwrap_or_else(|| panic!("{url} accepted")).to_string();
            assert!(err.starts_with("target payroll:") && err.contains("http://host:port"), "{url}: {err}");
        }
        let fine = RestConfig::new(vec![RestTarget::new("payroll", "https://payroll.internal:8443/", vec![DataType::Employee])]);
        assert!(RestPropagator::new(fine).is_ok());
    }

    #[test]
    fn debug_redacts_the_token() {
        let target = super::RestTarget::new("erp", "http://127.0.0.1:1", vec![]).with_token("tok-secret-123");
        let config = super::RestConfig::new(vec![target]);
        let text = format!("{config:?}");
        assert!(!text.contains("tok-secret-123") && text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn jitter_spreads_over_half_to_one_and_a_half() {
        let draws: Vec<f64> = (0..2000).map(|_| super::jitter()).collect();
        assert!(draws.iter().all(|j| (0.5..1.5).contains(j)));
        assert!(draws.iter().any(|j| *j < 0.6) && draws.iter().any(|j| *j > 1.4));
    }
}
