//! Property tests of the delivery contract: order, duplicates and deltas.

use hr_core::{ChangeEnvelope, DataType, Digest, Ledger, MasterData, MemorySink, Sink, SqliteSink};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn md(code: u8, name: &str) -> MasterData {
    MasterData { set: "md.category".into(), code: format!("C{code}").into(), name: name.into(), attributes: Default::default() }
}

/// A history of changes: per key, versions 1..=n, some of them deletes.
fn history() -> impl Strategy<Value = Vec<ChangeEnvelope>> {
    prop::collection::vec((0u8..12, 1usize..5, prop::collection::vec(any::<bool>(), 5)), 1..12).prop_map(|keys| {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = vec![];
        for (code, versions, deletes) in keys {
            if !seen.insert(code) {
                continue;
            }
            for v in 1..=versions {
                let change = if deletes[v - 1] {
                    ChangeEnvelope::delete(DataType::MasterData, md(code, "").key(), v as u64, "test")
                } else {
                    ChangeEnvelope::upsert(DataType::MasterData, md(code, "").key(), v as u64, "test", &md(code, &format!("v{v}"))).unwrap()
                };
                out.push(change);
            }
        }
        out
    })
}

/// `changes` with the duplicates `dup_picks` names, shuffled by `seed`.
fn messy(changes: &[ChangeEnvelope], dup_picks: &[prop::sample::Index], seed: u64) -> Vec<ChangeEnvelope> {
    use rand::{seq::SliceRandom, SeedableRng};
    let mut messy = changes.to_vec();
    messy.extend(dup_picks.iter().map(|pick| pick.get(changes).clone()));
    messy.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    messy
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any shuffle of a change list with duplicates ends in the same state and
    /// digest as applying it in order, in memory and in SQLite.
    #[test]
    fn shuffles_and_duplicates_never_change_the_result(
        changes in history(),
        dup_picks in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        seed in any::<u64>(),
        batch in 1usize..6,
    ) {
        let messy = messy(&changes, &dup_picks, seed);

        block_on(async {
            let ordered = MemorySink::default();
            ordered.apply(&changes).await.unwrap();
            let shuffled = MemorySink::default();
            let sqlite = SqliteSink::in_memory().unwrap();
            for chunk in messy.chunks(batch) {
                shuffled.apply(chunk).await.unwrap();
                sqlite.apply(chunk).await.unwrap();
            }
            prop_assert_eq!(ordered.snapshot(), shuffled.snapshot());
            let digest = ordered.digest(DataType::MasterData).await.unwrap();
            prop_assert_eq!(digest, shuffled.digest(DataType::MasterData).await.unwrap());
            prop_assert_eq!(digest, sqlite.digest(DataType::MasterData).await.unwrap());
            for ((_, key), held) in ordered.snapshot() {
                prop_assert_eq!(Some(held), sqlite.get(DataType::MasterData, &key).unwrap());
            }
            Ok(())
        })?;
    }

    /// The digests an SQLite store maintains as it applies changes equal a
    /// full read of the store after every batch, whatever the order and
    /// however many duplicates.
    #[test]
    fn maintained_digests_equal_a_full_read_after_every_batch(
        changes in history(),
        dup_picks in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        seed in any::<u64>(),
        batch in 1usize..6,
    ) {
        let messy = messy(&changes, &dup_picks, seed);
        block_on(async {
            let sqlite = SqliteSink::in_memory().unwrap();
            // Maintained from here on: the first digest reads the (empty) store.
            sqlite.digest(DataType::MasterData).await.unwrap();
            for chunk in messy.chunks(batch) {
                sqlite.apply(chunk).await.unwrap();
                let read = Digest::buckets(&sqlite.entries(DataType::MasterData).await.unwrap());
                prop_assert_eq!(sqlite.bucket_digests(DataType::MasterData).await.unwrap(), read);
            }
            Ok(())
        })?;
    }

    /// Ledger deltas over successive full loads, applied to a sink, reproduce
    /// each load exactly (live records and payloads), and digests agree.
    #[test]
    fn ledger_deltas_reproduce_every_state(
        loads in prop::collection::vec(prop::collection::btree_map(0u8..30, "[a-c]{1,2}", 0..20), 1..5),
    ) {
        let mut ledger = Ledger::in_memory().unwrap().with_max_delete_share(1.0);
        let sink = MemorySink::default();
        block_on(async {
            for load in loads {
                let state: BTreeMap<String, MasterData> = load.iter().map(|(c, n)| { let m = md(*c, n); (m.key(), m) }).collect();
                let records = state.iter().map(|(k, v)| (k.as_str(), serde_json::value::to_raw_value(v).unwrap()));
                let delta = ledger.plan(DataType::MasterData, records, "hub", false).unwrap();
                sink.apply(&delta.changes).await.unwrap();
                ledger.commit(DataType::MasterData, &delta).unwrap();
                let live: BTreeMap<String, MasterData> = sink
                    .snapshot()
                    .into_iter()
                    .filter(|(_, r)| !r.deleted)
                    .map(|((_, k), r)| (k, serde_json::from_str(r.body.as_deref().unwrap()).unwrap()))
                    .collect();
                prop_assert_eq!(&live, &state);
                prop_assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), ledger.digest(DataType::MasterData).unwrap());
                // A second plan of the same load sends nothing.
                let again = ledger.plan(DataType::MasterData, state.iter().map(|(k, v)| (k.as_str(), serde_json::value::to_raw_value(v).unwrap())), "hub", false).unwrap();
                prop_assert!(again.changes.is_empty());
            }
            Ok(())
        })?;
    }
}

#[test]
fn a_late_old_upsert_never_resurrects_a_deleted_record() {
    block_on(async {
        let sink = SqliteSink::in_memory().unwrap();
        let up = ChangeEnvelope::upsert(DataType::MasterData, "md.category:C1", 1, "t", &md(1, "x")).unwrap();
        let del = ChangeEnvelope::delete(DataType::MasterData, "md.category:C1", 2, "t");
        sink.apply(&[del]).await.unwrap();
        let outcome = sink.apply(&[up]).await.unwrap();
        assert_eq!((outcome.applied, outcome.stale), (0, 1));
        let held = sink.get(DataType::MasterData, "md.category:C1").unwrap().unwrap();
        assert!(held.deleted);
    });
}

#[test]
fn an_invalid_change_rejects_the_whole_batch() {
    block_on(async {
        let sink = SqliteSink::in_memory().unwrap();
        let good = ChangeEnvelope::upsert(DataType::MasterData, "md.category:C1", 1, "t", &md(1, "x")).unwrap();
        let mut bad = good.clone();
        bad.key = "md.category:OTHER".into();
        let err = sink.apply(&[good, bad]).await.unwrap_err();
        assert!(matches!(err, hr_core::SinkError::Invalid { index: 1, .. }), "{err}");
        assert_eq!(sink.count(DataType::MasterData).unwrap(), 0);
    });
}

#[test]
fn the_delete_guard_refuses_a_mass_delete_unless_forced() {
    let mut ledger = Ledger::in_memory().unwrap();
    let all: Vec<MasterData> = (0..10).map(|c| md(c, "n")).collect();
    let plan = |ledger: &Ledger, n: usize, force| {
        let mut v: Vec<_> = all[..n].iter().map(|m| (m.key(), serde_json::value::to_raw_value(m).unwrap())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        ledger.plan(DataType::MasterData, v, "hub", force)
    };
    let first = plan(&ledger, 10, false).unwrap();
    ledger.commit(DataType::MasterData, &first).unwrap();
    let err = plan(&ledger, 7, false).unwrap_err();
    assert!(err.to_string().contains("refusing to delete 3 of 10"), "{err}");
    assert_eq!(plan(&ledger, 8, false).unwrap().deleted, 2, "20% is allowed");
    assert_eq!(plan(&ledger, 7, true).unwrap().deleted, 3);
}
