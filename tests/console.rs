//! The operator console in a real browser: Debian's headless Chromium,
//! driven over WebDriver (chromedriver), against `hub --watch --listen`
//! with three `system` processes on the real broker. An operator signs in
//! with their token, sees the held run (a third of company A terminated)
//! and a possible duplicate person, decides the case "same person",
//! approves the plan that now holds both, and the next run applies exactly
//! that in every system. Screenshots of each page are written to
//! `$CARGO_TARGET_TMPDIR/console/` (those in `docs/` come from here).
//!
//! Chromium and chromedriver come from `scripts/browser.sh install`, which
//! the test command runs; the test fails without them.

use fantoccini::{Client, ClientBuilder, Locator};
use hr_testdata::{Dataset, GenerateOptions};
use rusqlite::Connection;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];
const LEAD_TOKEN: &str = "console-test-lead-token-0123456789abcdef";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Live employees a system holds as terminated.
fn terminated(deployment: &Deployment, system: &str) -> i64 {
    let conn = Connection::open(deployment.database(system)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row("SELECT count(*) FROM employee WHERE deleted = 0 AND json_extract(body, '$.status') = 'terminated'", [], |r| r.get(0)).unwrap()
}

/// chromedriver on a free loopback port, and its URL once it answers.
fn start_chromedriver() -> (Killed, String) {
    for program in [CHROMIUM, CHROMEDRIVER] {
        assert!(std::path::Path::new(program).exists(), "{program} is missing: run `bash scripts/browser.sh install` (the test command does)");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(CHROMEDRIVER).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let driver = Killed(child);
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "chromedriver did not listen on {port} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

/// A headless Chromium session with a profile of its own, and none of
/// Chromium's calls home (this machine's network is closed).
async fn browser(driver: &str, profile: &std::path::Path) -> Client {
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2000",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), serde_json::json!({"binary": CHROMIUM, "args": args}));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(capabilities).connect(driver).await.expect("Chromium starts")
}

/// Writes the page as a PNG beside the test's other outputs.
async fn screenshot(browser: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await.unwrap()).unwrap();
}

/// Clicks the button labelled `label` and waits for the page the form leads to.
async fn click(browser: &Client, label: &str) -> String {
    browser
        .find(Locator::XPath(&format!("//button[normalize-space()='{label}']")))
        .await
        .unwrap_or_else(|_| panic!("no button {label:?}"))
        .click()
        .await
        .unwrap();
    browser.wait().for_element(Locator::Css("p.flash")).await.unwrap();
    browser.source().await.unwrap()
}

/// The plan id of the next held run whose plan is not `other` (from the
/// report each run of the watching hub writes).
fn next_held_plan(deployment: &Deployment, lines: &mpsc::Receiver<String>, other: &str, seen: &mut Vec<String>) -> String {
    loop {
        wait_for_line(lines, "run done", seen);
        let report = deployment.last_report();
        match report["held"]["plan_id"].as_str() {
            Some(plan) if plan != other => return plan.to_string(),
            _ => continue,
        }
    }
}

/// The report of the next run that was not held.
fn next_run_sent(deployment: &Deployment, lines: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> serde_json::Value {
    loop {
        wait_for_line(lines, "run done", seen);
        let report = deployment.last_report();
        if report["held"].is_null() {
            return report;
        }
    }
}

#[test]
fn an_operator_decides_a_case_and_approves_a_held_run_in_the_browser_and_the_next_run_applies_it() {
    let callers = "\n[api.callers.hr-lead]\ntoken_env = \"HR_LEAD_TOKEN\"\nmay = [\"read\", \"approve\", \"review\"]\n";
    let (deployment, _systems) = Deployment::start_edited(&NAMES, brokers(), &[], &[], "", &|base| base + callers);
    Dataset::generate(&GenerateOptions::scaled(300)).write(&deployment.input).unwrap();
    let (survivor, look_alike) = plant_look_alikes(&deployment, 1).remove(0);
    let first = deployment.hub(&[]).env("HR_LEAD_TOKEN", LEAD_TOKEN).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_clean(&deployment.last_report(), "after the first run");
    let leavers = terminate_every_third(&deployment) as i64;
    let before: Vec<i64> = NAMES.iter().map(|n| terminated(&deployment, n)).collect();

    let mut command = deployment.hub(&["--watch", "2", "--listen", "127.0.0.1:0"]);
    command.env("HR_LEAD_TOKEN", LEAD_TOKEN);
    let mut hub = start_listening(command);
    let (lines, seen, api) = (&hub.lines, &mut hub.seen, hub.api.clone());
    let first_plan = next_held_plan(&deployment, lines, "", seen);

    let (_driver, driver_url) = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let browser = rt.block_on(browser(&driver_url, profile.path()));

    // Signed out, the console sends the browser to its sign-in page; the token signs in.
    let page = rt.block_on(async {
        browser.goto(&format!("{api}/ui")).await.unwrap();
        assert!(browser.current_url().await.unwrap().path().ends_with("/ui/login"), "an unsigned browser saw the console");
        screenshot(&browser, "sign-in").await;
        browser.find(Locator::Css("input#token")).await.unwrap().send_keys(LEAD_TOKEN).await.unwrap();
        browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
        browser.wait().for_element(Locator::Id("held")).await.unwrap();
        screenshot(&browser, "held").await;
        browser.source().await.unwrap()
    });
    assert!(page.contains(&first_plan) && page.contains("terminations"), "the held plan is not shown:\n{page}");
    assert!(page.contains(&look_alike) && page.contains(&survivor), "the review case is not shown:\n{page}");

    // "Same person": the next run plans the join too, so it is another plan, held again.
    let page = rt.block_on(click(&browser, "Same person"));
    assert!(page.contains("decided, one person"), "{page}");
    let plan = next_held_plan(&deployment, lines, &first_plan, seen);

    // The operator approves the plan the page now shows; the next run applies it.
    let page = rt.block_on(async {
        browser.goto(&format!("{api}/ui")).await.unwrap();
        browser.source().await.unwrap()
    });
    assert!(page.contains(&format!("Held for approval: plan <code>{plan}</code>")), "the page shows another plan than the last run's:\n{page}");
    let page = rt.block_on(click(&browser, "Approve this plan"));
    assert!(page.contains(&format!("Plan {plan} approved")), "{page}");
    let report = next_run_sent(&deployment, lines, seen);
    assert_clean(&report, "after the approved run");
    assert!(report["changes_sent"].as_u64().unwrap() > leavers as u64, "{}", report["changes_sent"]);
    for (name, was) in NAMES.iter().zip(&before) {
        assert_eq!(terminated(&deployment, name), was + leavers, "{name} holds the approved terminations");
        assert!(row(&deployment, name, "employee", &look_alike).is_some_and(|r| r.1), "{name}: the look-alike decided the same person is deleted");
        assert!(row(&deployment, name, "employee", &survivor).is_some_and(|r| !r.1), "{name}: the survivor stays");
    }

    // After the run: nothing held, no open case, every system equal to the hub, and the audit log names the operator.
    let page = rt.block_on(async {
        browser.goto(&format!("{api}/ui")).await.unwrap();
        screenshot(&browser, "after").await;
        browser.source().await.unwrap()
    });
    assert!(!page.contains("Held for approval") && page.contains("No open case."), "{page}");
    assert!(page.contains("sent (approved)") && !page.contains("differs ("), "{page}");
    assert!(page.contains("hr-lead</td><td>approve") && page.contains("hr-lead</td><td>decide"), "{page}");
    rt.block_on(browser.close()).unwrap();
}
