//! The whole seed scenario in-process at reduced size, against the real broker
//! (`HR_KAFKA_BROKERS`, default 127.0.0.1:9092; fails when none answers).

use hr_core::{DataType, SqliteSink};
use hr_demo::console::Console;
use hr_demo::scenario::{run, ScenarioOptions};
use hr_sync::HubConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_converges_on_the_real_broker() {
    let brokers = std::env::var("HR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let addr = brokers.split(',').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).is_ok(), "no Kafka broker at {brokers}: run scripts/kafka.sh start");
    let dir = tempfile::tempdir().unwrap();
    let options = ScenarioOptions {
        brokers: Some(brokers),
        input: None,
        data_dir: dir.path().to_path_buf(),
        employees: 2_000,
        config: HubConfig { topic_prefix: format!("t.scenario.{:x}.", rand::random::<u64>()), ..HubConfig::default() },
    };
    let report = run(options, &Console::lines()).await.unwrap();

    for (system, types) in &report.systems {
        for (t, r) in types {
            assert!(r.digest_matches, "{system} {t} digest differs from the hub's");
        }
        assert_eq!(types.contains_key(&DataType::Compensation), system == "payroll");
    }
    // Compensation exists only in payroll's database.
    for system in ["orgchart", "erp"] {
        let sink = SqliteSink::open(dir.path().join(format!("{system}.sqlite3"))).unwrap();
        assert_eq!(sink.count(DataType::Compensation).unwrap(), 0, "{system} holds compensation");
        assert!(sink.count(DataType::Employee).unwrap() > 1_900);
    }
    // erp's product catalogue, published by erp itself, is in every system.
    for system in ["payroll", "orgchart", "erp"] {
        let conn = rusqlite::Connection::open(dir.path().join(format!("{system}.sqlite3"))).unwrap();
        let products: i64 = conn.query_row("SELECT count(*) FROM master_data WHERE id LIKE 'md.product:%' AND deleted = 0", [], |r| r.get(0)).unwrap();
        assert_eq!(products, 1_000, "{system} holds erp's products");
    }
    let payroll = SqliteSink::open(dir.path().join("payroll.sqlite3")).unwrap();
    assert!(payroll.count(DataType::Compensation).unwrap() > 1_500);
    // The real-time changes, by content in every system, as seen right after each was confirmed
    // (the later periodic run may legitimately change these records again).
    let seen = &report.realtime_seen;
    let (granted, moved, team) = (&report.realtime_keys["permission"], &report.realtime_keys["employee"], &report.realtime_keys["team"]);
    // The grant reaches only the system it is for.
    let grant_system = granted.split(':').nth(1).unwrap();
    for system in ["payroll", "orgchart", "erp"] {
        if system == grant_system {
            let grant = seen["grant"][system].as_ref().unwrap_or_else(|| panic!("{system} lacks the real-time grant"));
            assert_eq!((&grant["granted"], grant["employee"].as_str()), (&serde_json::json!(true), granted.split(':').next()), "{system}");
            let revoked = seen["revoke"][system].as_ref().unwrap();
            assert_eq!(revoked["granted"], false, "{system}");
        } else {
            assert!(seen["grant"][system].is_none() && seen["revoke"][system].is_none(), "{system} received a grant for {grant_system}");
        }
        let employee = seen["transfer"][system].as_ref().unwrap_or_else(|| panic!("{system} lacks the transferred employee"));
        assert_eq!((employee["id"].as_str(), employee["org_unit"].as_str()), (Some(moved.as_str()), Some(team.as_str())), "{system}");
    }
    // The second periodic run sent only the deltas: about 1% changed plus 0.2% departures.
    assert_eq!(report.changes_sent.len(), 2);
    assert!(report.changes_sent[1] < report.changes_sent[0] / 10, "{:?}", report.changes_sent);
    assert!(report.changes_sent[1] >= 20);
}
