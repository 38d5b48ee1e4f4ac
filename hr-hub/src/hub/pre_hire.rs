//! People sent ahead of their hire date to the targets that ask for them
//! (`pre_start_days`): each such target alone holds them as `pre_hire`,
//! which the ledger remembers apart from what every target holds
//! ([`Ledger::plan_own`](hr_core::Ledger::plan_own)), until the hire date
//! sends them to every target as `active`. A slipped date updates them, a
//! hire cancelled (or moved out of the window) deletes them where they were sent.

use super::{blocking, count_sent, Hub, HubError};
use hr_core::{DataType, Delta, HeldBack, MergedState, Propagator, Receipt};
use std::collections::{BTreeSet, HashSet};

impl Hub {
    /// What `state`'s dates hold for after the hub's day
    /// ([`MergedState::scheduled`]), with the days each target with
    /// `pre_start_days` starts receiving someone ahead.
    pub fn scheduled(&self, state: &MergedState) -> Vec<hr_core::Scheduled> {
        let mut due = state.scheduled(self.today());
        for (target, days) in self.pre_start_targets() {
            due.extend(state.pre_hire_windows(self.today(), days, target));
        }
        due.sort();
        due
    }

    /// The targets that receive people ahead of their hire date, with how many days ahead.
    fn pre_start_targets(&self) -> Vec<(&String, u32)> {
        let targets = self.policy.targets.iter().filter(|(name, _)| self.policy.allows(name, DataType::Employee));
        targets.filter_map(|(name, t)| Some((name, t.pre_start_days?))).collect()
    }

    /// Per target with `pre_start_days`, what it alone is sent this run.
    /// `state` is the run's state before its dates are applied (the people
    /// not hired yet are in it); `deltas` are the run's changes for every
    /// target: a key they send, one held back, and one the targets already
    /// hold (a rehire dated ahead) is not a pre-hire's.
    pub(super) fn plan_pre_hires(&self, state: &MergedState, deltas: &[(DataType, Delta)], held: &HeldBack) -> Result<Vec<(String, Delta)>, HubError> {
        let targets = self.pre_start_targets();
        if targets.is_empty() {
            return Ok(vec![]);
        }
        let sent_to_all: HashSet<&str> =
            deltas.iter().filter(|(t, _)| *t == DataType::Employee).flat_map(|(_, d)| d.changes.iter().map(|c| c.key.as_str())).collect();
        let ledger = &self.ledger;
        // What this run sends everywhere, or holds back, stays as that makes it.
        let taken = |key: &str| sent_to_all.contains(key) || held.holds(DataType::Employee, key).is_some();
        let mut planned = vec![];
        for (target, days) in targets {
            let mut records = vec![];
            for person in state.pre_hires(self.today(), days) {
                let everywhere = blocking(|| ledger.version_of(DataType::Employee, &person.id))?.is_some_and(|(_, deleted)| !deleted);
                if !everywhere && !taken(&person.id) {
                    records.push((person.id.to_string(), serde_json::value::to_raw_value(&person)?));
                }
            }
            let fields = self.policy.scope(target).fields().clone();
            let delta = blocking(|| ledger.plan_own(DataType::Employee, target, &fields, records, taken, "hr-hub"))?;
            planned.push((target.clone(), delta));
        }
        Ok(planned)
    }

    /// Reserves, sends and records what each target alone is sent (from
    /// [`plan_pre_hires`](Self::plan_pre_hires)), after the run's changes
    /// for every target went.
    pub(super) async fn send_pre_hires(&mut self, own: Vec<(String, Delta)>) -> Result<(u64, Receipt), HubError> {
        let mut sent = 0;
        let mut receipt = Receipt::default();
        for (target, delta) in own.into_iter().filter(|(_, d)| !d.changes.is_empty()) {
            blocking(|| self.ledger.reserve(DataType::Employee, &delta))?;
            let delivered = self.router.propagate_to(&delta.changes, &BTreeSet::from([target.clone()])).await?;
            blocking(|| self.ledger.commit_own(DataType::Employee, &delta, &target))?;
            sent += delta.changes.len() as u64;
            let deltas = [(DataType::Employee, delta)];
            count_sent(&deltas, &delivered);
            receipt.merge(delivered);
        }
        Ok((sent, receipt))
    }
}
