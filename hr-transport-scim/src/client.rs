//! The propagator: writes each change to each directory as SCIM requests,
//! and reads the directories back for reconciliation.

use crate::bulk::{self, Answer, BulkLimits, Request};
use crate::config::{ScimConfig, ScimTarget, ScimTransportError};
use crate::ids::{IdStore, Known};
use crate::mapping::{group_of, group_patch, owned_group, owned_user, user_of, user_patch, PATCH_SCHEMA};
use async_trait::async_trait;
use hr_core::{
    ChangeEnvelope, ContentHash, DataType, DigestEntry, Employee, EmployeeStatus, FieldScope, OrgUnit, PropagateError, PropagationReport, Propagator,
    ReadBackError, Receipt, TargetFailure, TargetReader,
};
use hr_http::{read_bounded, root_cause};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::Mutex;

/// Delivers employees and org units to SCIM 2.0 directories, and reads
/// them back (see the crate docs for the model).
pub struct ScimPropagator {
    client: reqwest::Client,
    config: ScimConfig,
    ids: IdStore,
    /// What each directory said it supports, read once.
    providers: Mutex<BTreeMap<String, Provider>>,
}

impl std::fmt::Debug for ScimPropagator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimPropagator").field("targets", &self.config.targets).finish_non_exhaustive()
    }
}

/// What a directory's `/ServiceProviderConfig` says it supports.
#[derive(Debug, Clone, Copy)]
struct Provider {
    patch: bool,
    etag: bool,
    /// Bulk requests and their limits, where announced.
    bulk: Option<BulkLimits>,
}

/// Why a change did not reach a directory; `retriable` if the same batch may succeed later.
struct Failure {
    cause: String,
    retriable: bool,
}

impl Failure {
    fn answer(what: &str, answer: &Answer) -> Self {
        let detail = answer.body.get("detail").and_then(Value::as_str).unwrap_or("");
        let detail: String = detail.chars().take(200).collect();
        let retriable = answer.status.is_server_error() || answer.status == StatusCode::TOO_MANY_REQUESTS;
        Failure { cause: format!("{what}: HTTP {} {detail}", answer.status), retriable }
    }
}

/// One change as a directory gets it: scoped, its record decoded.
enum Write {
    User(Box<Employee>),
    Group(OrgUnit),
    Retire,
}

/// A User's move from one Group to another, made once per Group after a batch.
struct Move {
    key: String,
    user: String,
    from: Option<String>,
    to: String,
}

impl ScimPropagator {
    /// Checks every target (URL, data types), builds the HTTP client and
    /// opens the id store. Nothing is sent yet: each directory's
    /// capabilities are read on first use.
    pub fn new(config: ScimConfig) -> Result<Self, ScimTransportError> {
        for t in &config.targets {
            hr_http::check_target_url(&t.base_url, t.allow_insecure_http).map_err(|problem| ScimTransportError::Url {
                target: t.name.clone(),
                url: t.base_url.clone(),
                problem,
            })?;
            if let Some(data_type) = t.data_types.iter().find(|d| !matches!(d, DataType::Employee | DataType::OrgUnit)) {
                return Err(ScimTransportError::UnsupportedType { target: t.name.clone(), data_type: *data_type });
            }
        }
        let mut builder = hr_http::client_builder(config.request_timeout);
        if let Some(pem) = &config.ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ScimTransportError::Ca(e.to_string()))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let ids = IdStore::open(&config.id_store)?;
        Ok(ScimPropagator { client: builder.build().map_err(ScimTransportError::Client)?, config, ids, providers: Mutex::new(BTreeMap::new()) })
    }

    /// The directory's id of the resource the hub wrote for `key`, if any.
    pub fn scim_id(&self, target: &str, data_type: DataType, key: &str) -> Result<Option<String>, ScimTransportError> {
        Ok(self.ids.get(target, data_type, key)?.and_then(|k| k.scim_id))
    }

    fn target(&self, name: &str) -> Option<&ScimTarget> {
        self.config.targets.iter().find(|t| t.name == name)
    }

    async fn call(&self, t: &ScimTarget, method: Method, path: &str, body: Option<&Value>, if_match: Option<&str>) -> Result<Answer, Failure> {
        let mut request = self.client.request(method, format!("{}{path}", t.base_url)).header("Accept", "application/scim+json");
        if let Some(token) = &t.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/scim+json").body(body.to_string());
        }
        if let Some(etag) = if_match {
            request = request.header("If-Match", etag);
        }
        let response = request.send().await.map_err(|e| Failure { cause: format!("{path}: {}", root_cause(&e)), retriable: true })?;
        let status = response.status();
        let etag = response.headers().get("ETag").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = read_bounded(response, self.config.max_answer_bytes).await.map_err(|cause| Failure { cause, retriable: true })?;
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        let etag = etag.or_else(|| body["meta"]["version"].as_str().map(str::to_string));
        Ok(Answer { status, etag, body })
    }

    /// Reads `/ServiceProviderConfig` once per directory.
    async fn provider(&self, t: &ScimTarget) -> Result<Provider, Failure> {
        if let Some(p) = self.providers.lock().await.get(&t.name) {
            return Ok(*p);
        }
        let answer = self.call(t, Method::GET, "/ServiceProviderConfig", None, None).await?;
        if !answer.status.is_success() {
            return Err(Failure::answer("reading /ServiceProviderConfig", &answer));
        }
        let supported = |feature: &str| answer.body[feature]["supported"].as_bool().unwrap_or(false);
        let provider = Provider { patch: supported("patch"), etag: supported("etag"), bulk: BulkLimits::announced(&answer.body["bulk"]) };
        tracing::info!(target = %t.name, patch = provider.patch, etag = provider.etag, bulk = ?provider.bulk, "SCIM directory capabilities read");
        self.providers.lock().await.insert(t.name.clone(), provider);
        Ok(provider)
    }

    /// Delivers `batch` to one directory: its data types, in its field
    /// scope; org units first, so Users find their Group.
    async fn deliver(&self, t: &ScimTarget, batch: &[ChangeEnvelope]) -> (PropagationReport, Option<TargetFailure>) {
        let mut report = PropagationReport::default();
        let failed = |f: Failure| Some(TargetFailure { target: t.name.clone(), cause: f.cause, retriable: f.retriable });
        let mut mine: Vec<&ChangeEnvelope> = batch.iter().filter(|c| t.data_types.contains(&c.data_type)).collect();
        if mine.is_empty() {
            return (report, None);
        }
        let provider = match self.provider(t).await {
            Ok(p) => p,
            Err(f) => return (report, failed(f)),
        };
        mine.sort_by_key(|c| (c.data_type != DataType::OrgUnit, c.version));
        let mut moves = vec![];
        if let Err(f) = self.apply_all(t, provider, &mine, &mut report, &mut moves).await {
            return (report, failed(f));
        }
        if let Err(f) = self.move_members(t, provider, moves).await {
            return (report, failed(f));
        }
        if let Err(f) = self.set_pending_managers(t, provider).await {
            return (report, failed(f));
        }
        (report, None)
    }

    /// Applies `changes` in order. Where the directory takes Bulk requests
    /// (and the target allows them), every create and change of a User or
    /// Group travels in them; a change the directory refuses there, and
    /// every leaver, is applied again on its own as [`apply`](Self::apply)
    /// does (adopting on 409, writing again on 404, re-reading on 412).
    async fn apply_all(
        &self,
        t: &ScimTarget,
        provider: Provider,
        changes: &[&ChangeEnvelope],
        report: &mut PropagationReport,
        moves: &mut Vec<Move>,
    ) -> Result<(), Failure> {
        if !(t.bulk && provider.bulk.is_some()) {
            for change in changes {
                self.apply(t, provider, change, moves).await?;
                report.add(&t.name, change.data_type, 1);
            }
            return Ok(());
        }
        let mut alone: Vec<&ChangeEnvelope> = vec![];
        let mut staged = vec![];
        for change in changes {
            match self.stage(t, provider, change)? {
                Stage::Applied => report.add(&t.name, change.data_type, 1),
                Stage::Alone => alone.push(change),
                Stage::Write(write) => staged.push(write),
            }
        }
        let requests: Vec<Request> = staged.iter().filter_map(|s| s.request.clone()).collect();
        let mut answers = self.send_all(t, provider, &requests).await?.into_iter();
        for write in staged {
            let answer = write.request.as_ref().map(|_| answers.next().expect("one answer per request"));
            let written = match answer {
                None => write.known.as_ref().and_then(|k| Some((k.scim_id.clone()?, k.etag.clone()))),
                Some(answer) if answer.status.is_success() => {
                    let id = write.known.as_ref().and_then(|k| k.scim_id.clone()).or_else(|| answer.body["id"].as_str().map(str::to_string));
                    id.filter(|id| !id.is_empty()).map(|id| (id, answer.etag))
                }
                Some(_) => None,
            };
            match written {
                Some((id, etag)) => {
                    let known = match write.kind {
                        Kind::User { employee, manager } => user_written(t, &employee, &write.resource, manager.is_some(), write.known, id, etag, moves),
                        Kind::Group => group_written(&write.resource, id, etag),
                    };
                    self.remember(t, write.change, write.content, known)?;
                    report.add(&t.name, write.change.data_type, 1);
                }
                None => alone.push(write.change),
            }
        }
        for change in alone {
            self.apply(t, provider, change, moves).await?;
            report.add(&t.name, change.data_type, 1);
        }
        Ok(())
    }

    /// What one change asks of the directory, nothing sent yet: nothing (it
    /// holds this version), a create or change of a User or Group, or
    /// something to do on its own (a leaver).
    fn stage<'c>(&self, t: &ScimTarget, provider: Provider, change: &'c ChangeEnvelope) -> Result<Stage<'c>, Failure> {
        let store = |e: ScimTransportError| Failure { cause: e.to_string(), retriable: false };
        let known = self.ids.get(&t.name, change.data_type, &change.key).map_err(store)?;
        if known.as_ref().is_some_and(|k| k.version >= change.version) {
            return Ok(Stage::Applied);
        }
        let scoped = t.fields.apply(change).map_err(|e| Failure { cause: format!("{}: {e}", change.key_for_logs()), retriable: false })?;
        let content = scoped.payload_json().map(ContentHash::of);
        let (endpoint, resource, kind, patch): (&str, Value, Kind, Patch) = match decode(&scoped).map_err(|cause| Failure { cause, retriable: false })? {
            Write::Group(unit) => ("/Groups", group_of(&unit), Kind::Group, group_patch),
            Write::User(employee) if !(employee.status == EmployeeStatus::Terminated && t.delete_leavers) => {
                let manager = self.manager_of(t, &employee)?;
                let user = user_of(&employee, manager.as_deref());
                ("/Users", user, Kind::User { employee, manager }, user_patch)
            }
            _ => return Ok(Stage::Alone),
        };
        let request = match known.as_ref().and_then(|k| Some((k.scim_id.clone()?, k.seen.clone().unwrap_or_else(|| k.owned.clone()), k.etag.clone()))) {
            Some((id, was, etag)) => update_request(provider, &format!("{endpoint}/{id}"), &was, &resource, etag, patch),
            None => Some(Request { method: Method::POST, path: endpoint.to_string(), body: Some(resource.clone()), if_match: None }),
        };
        Ok(Stage::Write(Box::new(Staged { change, content, known, resource, kind, request })))
    }

    /// Remembers that the directory holds `change` as `known` says.
    fn remember(&self, t: &ScimTarget, change: &ChangeEnvelope, content: Option<ContentHash>, mut known: Known) -> Result<(), Failure> {
        known.version = change.version;
        known.content = content;
        self.ids.put(&t.name, change.data_type, &change.key, &known).map_err(|e| Failure { cause: e.to_string(), retriable: false })
    }

    /// Sends `requests` and answers each, in order: in Bulk requests where
    /// the directory takes them and the target allows it, else one by one.
    /// A Bulk request the directory refuses as a whole (it announced Bulk
    /// but answers 4xx) is sent again one request at a time.
    async fn send_all(&self, t: &ScimTarget, provider: Provider, requests: &[Request]) -> Result<Vec<Answer>, Failure> {
        let Some(limits) = provider.bulk.filter(|_| t.bulk && requests.len() > 1) else {
            return self.send_each(t, requests.iter()).await;
        };
        let (packed, alone) = bulk::pack(requests, limits);
        let mut answers: Vec<Option<Answer>> = requests.iter().map(|_| None).collect();
        for (indexes, body) in packed {
            let answer = self.call(t, Method::POST, "/Bulk", Some(&body), None).await?;
            metrics::counter!("hr_scim_bulk_requests_total", "target" => t.name.clone()).increment(1);
            let unpacked = match answer.status {
                s if s.is_success() => bulk::unpack(&indexes, &answer.body),
                s if s.is_client_error() && !matches!(s, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS) => {
                    tracing::warn!(target = %t.name, status = %s, "the directory refused a Bulk request; its operations go one by one");
                    self.send_each(t, indexes.iter().map(|i| &requests[*i])).await?
                }
                _ => return Err(Failure::answer("a Bulk request", &answer)),
            };
            for (i, answer) in indexes.into_iter().zip(unpacked) {
                answers[i] = Some(answer);
            }
        }
        for i in alone {
            answers[i] = Some(self.send(t, &requests[i]).await?);
        }
        Ok(answers.into_iter().map(|a| a.expect("every request is packed or sent alone")).collect())
    }

    /// Sends each of `requests` on its own, in order.
    async fn send_each(&self, t: &ScimTarget, requests: impl Iterator<Item = &Request>) -> Result<Vec<Answer>, Failure> {
        let mut answers = vec![];
        for request in requests {
            answers.push(self.send(t, request).await?);
        }
        Ok(answers)
    }

    async fn send(&self, t: &ScimTarget, request: &Request) -> Result<Answer, Failure> {
        self.call(t, request.method.clone(), &request.path, request.body.as_ref(), request.if_match.as_deref()).await
    }

    /// Applies one change unless the directory already has it or a newer one.
    async fn apply(&self, t: &ScimTarget, provider: Provider, change: &ChangeEnvelope, moves: &mut Vec<Move>) -> Result<(), Failure> {
        let store = |e: ScimTransportError| Failure { cause: e.to_string(), retriable: false };
        let known = self.ids.get(&t.name, change.data_type, &change.key).map_err(store)?;
        if known.as_ref().is_some_and(|k| k.version >= change.version) {
            return Ok(());
        }
        let scoped = t.fields.apply(change).map_err(|e| Failure { cause: format!("{}: {e}", change.key_for_logs()), retriable: false })?;
        let content = scoped.payload_json().map(ContentHash::of);
        let write = decode(&scoped).map_err(|cause| Failure { cause, retriable: false })?;
        let known = match write {
            Write::Group(unit) => self.write_group(t, provider, &unit, known).await?,
            Write::User(employee) if employee.status == EmployeeStatus::Terminated && t.delete_leavers => self.retire_user(t, provider, known).await?,
            Write::User(employee) => self.write_user(t, provider, &employee, known, moves).await?,
            Write::Retire if change.data_type == DataType::OrgUnit => self.delete(t, "/Groups", known).await?,
            Write::Retire => self.retire_user(t, provider, known).await?,
        };
        self.remember(t, change, content, known)
    }

    async fn write_user(&self, t: &ScimTarget, provider: Provider, employee: &Employee, known: Option<Known>, moves: &mut Vec<Move>) -> Result<Known, Failure> {
        let manager = self.manager_of(t, employee)?;
        let user = user_of(employee, manager.as_deref());
        let (scim_id, etag) = self.write(t, provider, "/Users", &user, known.as_ref(), owned_user, user_patch).await?;
        Ok(user_written(t, employee, &user, manager.is_some(), known, scim_id, etag, moves))
    }

    /// The SCIM id of `employee`'s manager, where the directory holds their
    /// User and naming them closes no cycle.
    fn manager_of(&self, t: &ScimTarget, employee: &Employee) -> Result<Option<String>, Failure> {
        match &employee.manager {
            Some(m) => self.manager_id(&t.name, employee.id.as_str(), m, &BTreeSet::new()).map_err(|e| Failure { cause: e.to_string(), retriable: false }),
            None => Ok(None),
        }
    }

    async fn write_group(&self, t: &ScimTarget, provider: Provider, unit: &OrgUnit, known: Option<Known>) -> Result<Known, Failure> {
        let group = group_of(unit);
        let (scim_id, etag) = self.write(t, provider, "/Groups", &group, known.as_ref(), owned_group, group_patch).await?;
        Ok(group_written(&group, scim_id, etag))
    }

    /// Writes `resource` at `endpoint`: a PATCH of what changed (a PUT
    /// where the directory has no PATCH) when the resource is known, else a
    /// POST, adopting the directory's own resource on a uniqueness
    /// conflict. Returns its id and ETag.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        t: &ScimTarget,
        provider: Provider,
        endpoint: &str,
        resource: &Value,
        known: Option<&Known>,
        owned: fn(&Value) -> Value,
        patch: Patch,
    ) -> Result<(String, Option<String>), Failure> {
        // Starting from what the directory holds: what was written, or what someone changed it to.
        let (id, was, etag) = match known.and_then(|k| k.scim_id.clone().map(|id| (id, k.seen.clone().unwrap_or_else(|| k.owned.clone()), k.etag.clone()))) {
            Some(held) => held,
            None => match self.create(t, endpoint, resource, owned).await? {
                Created::New(id, etag) => return Ok((id, etag)),
                Created::Adopted(id, was, etag) => (id, was, etag),
            },
        };
        let path = format!("{endpoint}/{id}");
        let mut was = was;
        let mut etag = etag;
        for attempt in 0..2 {
            let Some(request) = update_request(provider, &path, &was, resource, etag.clone(), patch) else { return Ok((id, etag)) };
            let answer = self.send(t, &request).await?;
            match answer.status {
                s if s.is_success() => return Ok((id, answer.etag)),
                // Gone from the directory (deleted by hand): written again.
                StatusCode::NOT_FOUND => {
                    return match self.create(t, endpoint, resource, owned).await? {
                        Created::New(id, etag) => Ok((id, etag)),
                        Created::Adopted(..) => {
                            Err(Failure { cause: format!("{endpoint}: a resource with this key appeared while it was written"), retriable: true })
                        }
                    }
                }
                // Changed since read: read it again and retry once with what it holds now.
                StatusCode::PRECONDITION_FAILED if attempt == 0 => {
                    let now = self.call(t, Method::GET, &path, None, None).await?;
                    if !now.status.is_success() {
                        return Err(Failure::answer(&format!("re-reading {endpoint}"), &now));
                    }
                    was = owned(&now.body);
                    etag = now.etag;
                }
                _ => return Err(Failure::answer(&format!("writing {endpoint}"), &answer)),
            }
        }
        Err(Failure { cause: format!("{endpoint}: changed by someone else twice while written (HTTP 412)"), retriable: true })
    }

    /// POSTs `resource`; on a uniqueness conflict (409) finds the
    /// directory's resource with the same `externalId`, else the same
    /// `userName` or `displayName`, and adopts it instead of creating a second.
    async fn create(&self, t: &ScimTarget, endpoint: &str, resource: &Value, owned: fn(&Value) -> Value) -> Result<Created, Failure> {
        let answer = self.call(t, Method::POST, endpoint, Some(resource), None).await?;
        if answer.status.is_success() {
            let id = answer.body["id"]
                .as_str()
                .ok_or_else(|| Failure { cause: format!("{endpoint}: the directory answered a POST without an id"), retriable: false })?;
            return Ok(Created::New(id.to_string(), answer.etag));
        }
        if answer.status != StatusCode::CONFLICT {
            return Err(Failure::answer(&format!("creating in {endpoint}"), &answer));
        }
        let unique = if endpoint == "/Users" { "userName" } else { "displayName" };
        for attribute in ["externalId", unique] {
            let Some(value) = resource[attribute].as_str() else { continue };
            if let Some(found) = self.find(t, endpoint, attribute, value).await? {
                let id = found["id"].as_str().unwrap_or_default().to_string();
                tracing::info!(target = %t.name, endpoint, attribute, "adopting the directory's resource instead of creating a second");
                metrics::counter!("hr_scim_adopted_total", "target" => t.name.clone()).increment(1);
                let etag = found["meta"]["version"].as_str().map(str::to_string);
                return Ok(Created::Adopted(id, owned(&found), etag));
            }
        }
        Err(Failure::answer(&format!("creating in {endpoint} (a conflict, and no resource with its externalId or {unique} found)"), &answer))
    }

    /// The resource of `endpoint` whose `attribute` equals `value`.
    async fn find(&self, t: &ScimTarget, endpoint: &str, attribute: &str, value: &str) -> Result<Option<Value>, Failure> {
        let quoted = serde_json::to_string(value).unwrap_or_default();
        let filter = format!("{attribute} eq {quoted}");
        let url =
            reqwest::Url::parse_with_params("http://x/", [("filter", filter.as_str())]).map_err(|e| Failure { cause: e.to_string(), retriable: false })?;
        let answer = self.call(t, Method::GET, &format!("{endpoint}?{}", url.query().unwrap_or_default()), None, None).await?;
        if !answer.status.is_success() {
            return Err(Failure::answer(&format!("searching {endpoint}"), &answer));
        }
        Ok(answer.body["Resources"].as_array().and_then(|r| r.first()).cloned())
    }

    /// A leaver or a deleted employee: deactivated, or deleted when the target says so.
    async fn retire_user(&self, t: &ScimTarget, provider: Provider, known: Option<Known>) -> Result<Known, Failure> {
        if t.delete_leavers {
            return self.delete(t, "/Users", known).await;
        }
        let Some(mut known) = known.filter(|k| k.scim_id.is_some()) else { return Ok(gone()) };
        let held = known.seen.take().unwrap_or_else(|| known.owned.clone());
        let mut inactive = held.clone();
        inactive["active"] = json!(false);
        if held == inactive {
            known.owned = inactive;
            return Ok(known);
        }
        let id = known.scim_id.clone().unwrap_or_default();
        let path = format!("/Users/{id}");
        let answer = if provider.patch {
            let body = json!({ "schemas": [PATCH_SCHEMA], "Operations": [{ "op": "replace", "value": { "active": false } }] });
            self.call(t, Method::PATCH, &path, Some(&body), None).await?
        } else {
            let mut user = self.call(t, Method::GET, &path, None, None).await?.body;
            user["active"] = json!(false);
            self.call(t, Method::PUT, &path, Some(&user), None).await?
        };
        match answer.status {
            s if s.is_success() => {
                known.owned = inactive;
                known.etag = answer.etag;
                Ok(known)
            }
            StatusCode::NOT_FOUND => Ok(gone()),
            _ => Err(Failure::answer("deactivating a User", &answer)),
        }
    }

    async fn delete(&self, t: &ScimTarget, endpoint: &str, known: Option<Known>) -> Result<Known, Failure> {
        if let Some(id) = known.and_then(|k| k.scim_id) {
            let answer = self.call(t, Method::DELETE, &format!("{endpoint}/{id}"), None, None).await?;
            if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
                return Err(Failure::answer(&format!("deleting from {endpoint}"), &answer));
            }
        }
        Ok(gone())
    }

    /// The SCIM id of `manager` for the User of `key`, unless naming it
    /// would close a cycle of managers (refused: a directory walking the
    /// chain would never end). The Users of `named` count as naming their
    /// managers already (they are about to).
    fn manager_id(&self, target: &str, key: &str, manager: &str, named: &BTreeSet<String>) -> Result<Option<String>, ScimTransportError> {
        let mut next = Some(manager.to_string());
        for _ in 0..10_000 {
            let Some(k) = next else { break };
            if k == key {
                tracing::warn!(target = %target, "a manager reference would close a cycle; the User is written without its manager");
                metrics::counter!("hr_scim_manager_cycles_total", "target" => target.to_string()).increment(1);
                return Ok(None);
            }
            // Only references the directory holds: a pending one may yet be refused.
            next = self.ids.get(target, DataType::Employee, &k)?.filter(|known| known.manager_set || named.contains(&k)).and_then(|known| known.manager);
        }
        Ok(self.ids.get(target, DataType::Employee, manager)?.and_then(|k| k.scim_id))
    }

    /// Moves Users between Groups: one PATCH per Group, whatever the
    /// number of members (all of them in Bulk requests where supported).
    async fn move_members(&self, t: &ScimTarget, provider: Provider, moves: Vec<Move>) -> Result<(), Failure> {
        let store = |e: ScimTransportError| Failure { cause: e.to_string(), retriable: false };
        let mut ops: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut added: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for m in &moves {
            if let Some(from) = &m.from {
                ops.entry(from.clone()).or_default().push(json!({ "op": "remove", "path": format!("members[value eq \"{}\"]", m.user) }));
            }
            added.entry(m.to.clone()).or_default().push(json!({ "value": m.user }));
        }
        for (group, members) in added {
            ops.entry(group).or_default().push(json!({ "op": "add", "path": "members", "value": members }));
        }
        let mut groups = vec![];
        let mut requests = vec![];
        for (group, operations) in ops {
            let Some(id) = self.ids.get(&t.name, DataType::OrgUnit, &group).map_err(store)?.and_then(|k| k.scim_id) else {
                tracing::warn!(target = %t.name, "an employee's org unit has no Group in the directory yet; membership follows when it has");
                continue;
            };
            let body = json!({ "schemas": [PATCH_SCHEMA], "Operations": operations });
            requests.push(Request { method: Method::PATCH, path: format!("/Groups/{id}"), body: Some(body), if_match: None });
            groups.push(group);
        }
        let answers = self.send_all(t, provider, &requests).await?;
        if let Some(refused) = answers.iter().find(|a| !a.status.is_success()) {
            return Err(Failure::answer("moving members between Groups", refused));
        }
        let moved: BTreeSet<String> = groups.into_iter().collect();
        for m in moves.into_iter().filter(|m| moved.contains(&m.to)) {
            if let Some(mut known) = self.ids.get(&t.name, DataType::Employee, &m.key).map_err(store)? {
                known.group = Some(m.to);
                self.ids.put(&t.name, DataType::Employee, &m.key, &known).map_err(store)?;
            }
        }
        Ok(())
    }

    /// Names the manager of each User written before its manager's User
    /// existed (all of them in Bulk requests where supported).
    async fn set_pending_managers(&self, t: &ScimTarget, provider: Provider) -> Result<(), Failure> {
        let store = |e: ScimTransportError| Failure { cause: e.to_string(), retriable: false };
        let mut named = BTreeSet::new();
        let mut pending = vec![];
        for (key, known) in self.ids.managers_pending(&t.name).map_err(store)? {
            let manager = known.manager.clone().unwrap_or_default();
            let Some(manager_id) = self.manager_id(&t.name, &key, &manager, &named).map_err(store)? else { continue };
            named.insert(key.clone());
            pending.push((key, known, manager_id));
        }
        let mut requests = vec![];
        for (_, known, manager_id) in &pending {
            let path = format!("/Users/{}", known.scim_id.clone().unwrap_or_default());
            let request = if provider.patch {
                let value = json!({ crate::mapping::ENTERPRISE_SCHEMA: { "manager": { "value": manager_id } } });
                let body = json!({ "schemas": [PATCH_SCHEMA], "Operations": [{ "op": "replace", "value": value }] });
                Request { method: Method::PATCH, path, body: Some(body), if_match: None }
            } else {
                let mut full = self.call(t, Method::GET, &path, None, None).await?.body;
                full[crate::mapping::ENTERPRISE_SCHEMA]["manager"] = json!({ "value": manager_id });
                Request { method: Method::PUT, path, body: Some(full), if_match: None }
            };
            requests.push(request);
        }
        let answers = self.send_all(t, provider, &requests).await?;
        let mut refused = None;
        for ((key, mut known, manager_id), answer) in pending.into_iter().zip(answers) {
            if !answer.status.is_success() {
                refused.get_or_insert(Failure::answer("naming a User's manager", &answer));
                continue;
            }
            known.owned["manager"] = json!(manager_id);
            known.etag = answer.etag;
            known.manager_set = true;
            self.ids.put(&t.name, DataType::Employee, &key, &known).map_err(store)?;
        }
        refused.map_or(Ok(()), Err)
    }

    /// Every resource of `endpoint`, page by page.
    async fn list(&self, t: &ScimTarget, endpoint: &str) -> Result<BTreeMap<String, Value>, Failure> {
        let mut out = BTreeMap::new();
        let mut start = 1;
        loop {
            let path = format!("{endpoint}?startIndex={start}&count={}", self.config.page_size);
            let answer = self.call(t, Method::GET, &path, None, None).await?;
            if !answer.status.is_success() {
                return Err(Failure::answer(&format!("listing {endpoint}"), &answer));
            }
            let page = answer.body["Resources"].as_array().cloned().unwrap_or_default();
            let total = answer.body["totalResults"].as_u64().unwrap_or(0) as usize;
            let read = page.len();
            for resource in page {
                if let Some(id) = resource["id"].as_str() {
                    out.insert(id.to_string(), resource);
                }
            }
            start += read;
            if read == 0 || start > total {
                return Ok(out);
            }
        }
    }
}

/// Builds the JSON Patch operations that bring a resource from what the
/// directory holds to what it should (see [`crate::mapping`]).
type Patch = fn(&Value, &Value) -> Vec<Value>;

/// What one change asks of a directory (see [`ScimPropagator::stage`]).
enum Stage<'c> {
    /// The directory holds this version already.
    Applied,
    /// To be done on its own (a leaver: deactivated or deleted).
    Alone,
    /// A create or change of a User or Group.
    Write(Box<Staged<'c>>),
}

/// A change of a User or Group, staged for a Bulk request.
struct Staged<'c> {
    change: &'c ChangeEnvelope,
    /// The hash of its scoped content, remembered once written.
    content: Option<ContentHash>,
    known: Option<Known>,
    /// The User or Group it should be.
    resource: Value,
    kind: Kind,
    /// `None`: the directory holds these attributes already.
    request: Option<Request>,
}

/// Which resource a staged change writes.
enum Kind {
    /// An employee, with their manager's SCIM id where known.
    User {
        employee: Box<Employee>,
        manager: Option<String>,
    },
    Group,
}

/// The request bringing the resource at `path` from `was` to `resource`:
/// a PATCH of what differs (`None` when nothing does), a PUT where the
/// directory has no PATCH; with `If-Match` where it supports ETags.
fn update_request(provider: Provider, path: &str, was: &Value, resource: &Value, etag: Option<String>, patch: Patch) -> Option<Request> {
    let (method, body) = if provider.patch {
        let ops = patch(was, resource);
        if ops.is_empty() {
            return None;
        }
        (Method::PATCH, json!({ "schemas": [PATCH_SCHEMA], "Operations": ops }))
    } else {
        (Method::PUT, resource.clone())
    };
    Some(Request { method, path: path.to_string(), body: Some(body), if_match: etag.filter(|_| provider.etag) })
}

/// What is remembered of an employee's User once written as `user` (with
/// its manager if `manager_named`), and the move to its Group it needs.
#[allow(clippy::too_many_arguments)]
fn user_written(
    t: &ScimTarget,
    employee: &Employee,
    user: &Value,
    manager_named: bool,
    known: Option<Known>,
    scim_id: String,
    etag: Option<String>,
    moves: &mut Vec<Move>,
) -> Known {
    let group = known.and_then(|k| k.group);
    if t.data_types.contains(&DataType::OrgUnit) && group.as_deref() != Some(employee.org_unit.as_str()) {
        moves.push(Move { key: employee.id.to_string(), user: scim_id.clone(), from: group.clone(), to: employee.org_unit.to_string() });
    }
    Known {
        scim_id: Some(scim_id),
        etag,
        version: 0,
        content: None,
        owned: owned_user(user),
        group,
        manager: employee.manager.as_ref().map(ToString::to_string),
        manager_set: employee.manager.is_none() || manager_named,
        seen: None,
    }
}

/// What is remembered of an org unit's Group once written as `group`.
fn group_written(group: &Value, scim_id: String, etag: Option<String>) -> Known {
    Known { scim_id: Some(scim_id), etag, version: 0, content: None, owned: owned_group(group), group: None, manager: None, manager_set: true, seen: None }
}

/// What a POST came to.
enum Created {
    /// A new resource: its id and ETag.
    New(String, Option<String>),
    /// The directory's resource with the same identity: its id, the
    /// attributes it holds, its ETag.
    Adopted(String, Value, Option<String>),
}

impl ScimPropagator {
    /// Writes each directory `chosen` picks, all at once.
    async fn write_to(&self, batch: &[ChangeEnvelope], chosen: impl Fn(&ScimTarget) -> bool) -> Result<Receipt, PropagateError> {
        let writes = self.config.targets.iter().filter(|t| chosen(t)).map(|t| self.deliver(t, batch));
        Receipt::from_targets("scim", futures::future::join_all(writes).await)
    }
}

/// A key whose resource is no longer in the directory.
fn gone() -> Known {
    Known { scim_id: None, etag: None, version: 0, content: None, owned: json!({}), group: None, manager: None, manager_set: true, seen: None }
}

/// The record a scoped change carries, for its data type.
fn decode(change: &ChangeEnvelope) -> Result<Write, String> {
    let Some(payload) = change.payload_json() else { return Ok(Write::Retire) };
    let bad = |e: serde_json::Error| format!("{} {}: not a valid record: {}", change.data_type, change.key_for_logs(), hr_core::describe_json_error(&e));
    match change.data_type {
        DataType::Employee => Ok(Write::User(Box::new(serde_json::from_str(payload).map_err(bad)?))),
        DataType::OrgUnit => Ok(Write::Group(serde_json::from_str(payload).map_err(bad)?)),
        other => Err(format!("a directory takes no {other}")),
    }
}

#[async_trait]
impl Propagator for ScimPropagator {
    /// Writes each directory its data types; the receipt is applied on
    /// return, since a directory answers once it holds the change.
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        self.write_to(batch, |_| true).await
    }

    /// Writes the named directories alone.
    async fn propagate_to(&self, batch: &[ChangeEnvelope], targets: &BTreeSet<String>) -> Result<Receipt, PropagateError> {
        self.write_to(batch, |t| targets.contains(&t.name)).await
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        self.config.targets.iter().map(|t| (t.name.clone(), t.data_types.clone())).collect()
    }

    fn field_scope(&self, target: &str) -> FieldScope {
        self.target(target).map(|t| t.fields.clone()).unwrap_or_default()
    }
}

/// Reads each directory's Users and Groups and tells, key by key, whether
/// it still holds what the hub wrote: the hub's own entry if so, an entry
/// with another content hash if it was edited, none if it is gone.
/// Resources the hub never wrote (administrators, service accounts) are
/// not the hub's to compare.
#[async_trait]
impl TargetReader for ScimPropagator {
    fn readable_targets(&self) -> Vec<String> {
        self.config.targets.iter().map(|t| t.name.clone()).collect()
    }

    async fn entries(&self, target: &str, data_type: DataType, buckets: &[usize]) -> Result<Vec<DigestEntry>, ReadBackError> {
        let t = self.target(target).ok_or_else(|| ReadBackError::new(target, "not a SCIM target"))?;
        let (endpoint, owned): (&str, fn(&Value) -> Value) = match data_type {
            DataType::Employee => ("/Users", owned_user),
            DataType::OrgUnit => ("/Groups", owned_group),
            _ => return Ok(vec![]),
        };
        let held = self.list(t, endpoint).await.map_err(|f| ReadBackError::new(target, f.cause))?;
        let mut wanted = [false; hr_core::BUCKETS];
        buckets.iter().filter(|b| **b < hr_core::BUCKETS).for_each(|b| wanted[*b] = true);
        let mut entries = vec![];
        for (key, mut known) in self.ids.all(target, data_type).map_err(|e| ReadBackError::new(target, e))? {
            if !wanted[hr_core::bucket_of(&key)] {
                continue;
            }
            let resource = known.scim_id.as_ref().and_then(|id| held.get(id));
            let retired = |r: &Value| data_type == DataType::Employee && r["active"] == json!(false);
            let content = match (known.content, resource) {
                (None, None) => None,
                (None, Some(r)) if retired(r) => None,
                (Some(ours), Some(r)) if owned(r) == known.owned => {
                    if known.seen.take().is_some() {
                        self.ids.put(target, data_type, &key, &known).map_err(|e| ReadBackError::new(target, e))?;
                    }
                    Some(ours)
                }
                (_, Some(r)) => {
                    // Edited by hand: remember what it holds, so the repair writes what differs
                    // (and what was written stays what it is compared with: reading twice tells the same).
                    let seen = owned(r);
                    if known.seen.as_ref() != Some(&seen) {
                        known.seen = Some(seen.clone());
                        known.etag = r["meta"]["version"].as_str().map(str::to_string);
                        self.ids.put(target, data_type, &key, &known).map_err(|e| ReadBackError::new(target, e))?;
                    }
                    Some(ContentHash::of(&seen.to_string()))
                }
                (Some(_), None) => {
                    // Deleted by hand: the repair creates it again.
                    if known.scim_id.take().is_some() {
                        self.ids.put(target, data_type, &key, &known).map_err(|e| ReadBackError::new(target, e))?;
                    }
                    continue;
                }
            };
            entries.push(DigestEntry { key, version: known.version, content });
        }
        Ok(entries)
    }
}
