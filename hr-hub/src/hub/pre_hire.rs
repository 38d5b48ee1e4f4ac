//! People sent ahead of their hire date to the targets that ask for them
//! (`pre_start_days`): each such target alone holds them as `pre_hire`,
//! which the ledger remembers apart from what every target holds
//! ([`Ledger::plan_own`](hr_core::Ledger::plan_own)), until the hire date
//! sends them to every target as `active`. A slipped date updates them, a
//! hire cancelled (or moved out of the window) deletes them where they were
//! sent, and so does a target that no longer asks for them.

use super::{blocking, count_sent, Hub, HubError, Reconciliation, RepairOutcome};
use hr_core::{CompanyDays, DataType, Delta, HeldBack, MergedState, Propagator, Receipt};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

impl Hub {
    /// What `state`'s dates hold for after the hub's day
    /// ([`MergedState::scheduled`]), with the days each target with
    /// `pre_start_days` starts receiving someone ahead.
    pub fn scheduled(&self, state: &MergedState) -> Vec<hr_core::Scheduled> {
        self.scheduled_on(state, state.days(self.today))
    }

    /// [`scheduled`](Self::scheduled) as of `today`.
    pub(super) fn scheduled_on(&self, state: &MergedState, today: CompanyDays) -> Vec<hr_core::Scheduled> {
        let mut due = state.scheduled(today);
        for (target, days) in self.pre_start_targets() {
            due.extend(state.pre_hire_windows(today, days, target));
        }
        due.sort();
        due
    }

    /// The targets that receive people ahead of their hire date, with how many days ahead.
    fn pre_start_targets(&self) -> Vec<(&String, u32)> {
        let targets = self.policy.targets.iter().filter(|(name, _)| self.policy.allows(name, DataType::Employee));
        targets.filter_map(|(name, t)| Some((name, t.pre_start_days.filter(|days| *days > 0)?))).collect()
    }

    /// The companies' days a plan of `state` judges dates by (the clock
    /// read once: a midnight passing while it plans changes nothing in it),
    /// and `held` with every person the systems hold as a leaver whose new
    /// hire date is ahead (a rehire dated later): they keep the record, pay
    /// and grants the systems hold until that day, not deleted meanwhile.
    /// Someone the systems hold active whose hire date moved ahead is not
    /// held: they are not employed until that day, and leave the systems
    /// with their access (fails closed).
    pub(super) fn dated_hold<'h>(&self, state: &MergedState, held: &'h HeldBack) -> Result<(CompanyDays, Cow<'h, HeldBack>), HubError> {
        let today = state.days(self.today);
        let mut more: Option<HeldBack> = None;
        for person in state.employees.values().filter(|e| e.hire_date > today.of(e.company)) {
            let standing = blocking(|| self.ledger.standing(DataType::Employee, &person.id))?;
            if standing.is_none_or(|s| s.state != "terminated") {
                continue;
            }
            let file = match person.company {
                hr_core::Company::A => hr_core::input::A_EMPLOYEES,
                hr_core::Company::B => hr_core::input::B_EMPLOYEES,
            };
            let why = hr_core::Quarantined {
                file: file.into(),
                line: 0,
                id: Some(person.id.to_string()),
                reason: hr_core::Reason::NotYetEffective,
                detail: format!("rehired from {}: the record the systems hold stays until then", person.hire_date),
            };
            more.get_or_insert_with(|| held.clone()).hold_person(&person.id, why);
        }
        Ok((today, more.map_or(Cow::Borrowed(held), Cow::Owned)))
    }

    /// Per target with `pre_start_days` (or holding pre-hires from before
    /// it stopped asking), what it alone is sent this run. `state` is the
    /// run's state before its dates are applied (the people not hired yet
    /// are in it); `deltas` are the run's changes for every target: a key
    /// they send, or one held back, is theirs to decide.
    pub(super) fn plan_pre_hires(
        &self,
        state: &MergedState,
        deltas: &[(DataType, Delta)],
        held: &HeldBack,
        today: CompanyDays,
    ) -> Result<Vec<(String, Delta)>, HubError> {
        let ledger = &self.ledger;
        let mut targets: Vec<(String, Option<u32>)> = self.pre_start_targets().into_iter().map(|(name, days)| (name.clone(), Some(days))).collect();
        for name in blocking(|| ledger.own_content_targets(DataType::Employee))? {
            if !targets.iter().any(|(t, _)| *t == name) {
                targets.push((name, None));
            }
        }
        if targets.is_empty() {
            return Ok(vec![]);
        }
        let sent_to_all: HashSet<&str> =
            deltas.iter().filter(|(t, _)| *t == DataType::Employee).flat_map(|(_, d)| d.changes.iter().map(|c| c.key.as_str())).collect();
        let taken = |key: &str| sent_to_all.contains(key) || held.holds(DataType::Employee, key).is_some();
        let mut given = HashMap::new();
        let mut planned = vec![];
        for (target, days) in targets {
            let mut records = vec![];
            for person in days.map(|days| state.pre_hires(today, days)).unwrap_or_default() {
                // Someone every target holds already (a rehire) is not sent ahead.
                let everywhere = blocking(|| ledger.version_of(DataType::Employee, &person.id))?.is_some_and(|(_, deleted)| !deleted);
                if !everywhere && !taken(&person.id) {
                    records.push((person.id.to_string(), serde_json::value::to_raw_value(&person)?));
                }
            }
            let fields = self.policy.scope(&target).fields().clone();
            let delta = blocking(|| ledger.plan_own(DataType::Employee, &target, &fields, records, taken, &mut given))?;
            planned.push((target, delta));
        }
        Ok(planned)
    }

    /// Reserves, sends and records what each target alone is sent (from
    /// [`plan_pre_hires`](Self::plan_pre_hires)). A send that fails stays
    /// in doubt for that target alone, and the next run sends it again.
    pub(super) async fn send_pre_hires(&mut self, own: Vec<(String, Delta)>) -> Result<(u64, Receipt), HubError> {
        let mut sent = 0;
        let mut receipt = Receipt::default();
        for (target, delta) in own.into_iter().filter(|(_, d)| !d.changes.is_empty()) {
            blocking(|| self.ledger.reserve_own(DataType::Employee, &delta, &target))?;
            let delivered = self.router.propagate_to(&delta.changes, &BTreeSet::from([target.clone()])).await?;
            blocking(|| self.ledger.commit_own(DataType::Employee, &delta, &target))?;
            sent += delta.changes.len() as u64;
            count_sent(&[(DataType::Employee, delta)], &delivered);
            receipt.merge(delivered);
        }
        Ok((sent, receipt))
    }

    /// `found` without the employee keys a target holds as its own (a
    /// pre-hire found differing there), and those keys by target: the
    /// ledger's record of the key is not what that target should hold, so a
    /// repair from it would be wrong; the pre-hire is sent again instead
    /// ([`repair_pre_hires`](Self::repair_pre_hires)).
    pub(super) fn without_pre_hire_drift(&self, found: &Reconciliation) -> Result<(Reconciliation, BTreeMap<String, Vec<String>>), HubError> {
        let mut rest = found.clone();
        let mut own: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (target, per_type) in rest.iter_mut() {
            let Some(reconciled) = per_type.get_mut(&DataType::Employee) else { continue };
            let drift = &mut reconciled.drift;
            for keys in [&mut drift.missing, &mut drift.edited, &mut drift.extra] {
                let mut kept = Vec::with_capacity(keys.len());
                for k in keys.drain(..) {
                    if blocking(|| self.ledger.holds_own(DataType::Employee, target, &k.key))? {
                        own.entry(target.clone()).or_default().push(k.key);
                    } else {
                        kept.push(k);
                    }
                }
                *keys = kept;
            }
        }
        Ok((rest, own))
    }

    /// Sends again, to their target alone, the pre-hires found differing
    /// there (see [`without_pre_hire_drift`](Self::without_pre_hire_drift)).
    pub(super) async fn repair_pre_hires(
        &mut self,
        state: &MergedState,
        held: &HeldBack,
        differing: BTreeMap<String, Vec<String>>,
        outcome: &mut RepairOutcome,
    ) -> Result<(), HubError> {
        if differing.is_empty() {
            return Ok(());
        }
        for (target, keys) in &differing {
            blocking(|| self.ledger.forget_own(DataType::Employee, target, keys))?;
            *outcome.repaired_per_target.entry(target.clone()).or_default().entry(DataType::Employee).or_default() += keys.len() as u64;
            *outcome.repaired.entry(DataType::Employee).or_default() += keys.len() as u64;
        }
        let (today, held) = self.dated_hold(state, held)?;
        let mut again = self.plan_pre_hires(state, &[], &held, today)?;
        // Only what the comparison found, as the repairs' plan names: anything else waits for the next run.
        for (target, delta) in &mut again {
            let found = differing.get(target);
            delta.retain(|change| found.is_some_and(|keys| keys.contains(&change.key)));
        }
        let (sent, receipt) = self.send_pre_hires(again).await?;
        outcome.sent.sent += sent;
        outcome.sent.receipt.merge(receipt);
        Ok(())
    }
}
