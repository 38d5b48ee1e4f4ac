//! The console's pages, rendered on the server: plain HTML forms that work
//! without JavaScript; every value is escaped by `maud`.

use super::session::Flash;
use super::{LiveStatus as Live, SystemsLive};
use crate::api::CallerRight;
use crate::Comparison;
use hr_core::{AuditEntry, Quarantined, ReviewCase};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

/// The style sheet, served at `/ui/style.css` (the pages allow no inline style).
pub(super) const STYLE: &str = "
body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem 2rem; color: #1d2733; }
header { display: flex; justify-content: space-between; align-items: baseline; border-bottom: 1px solid #ccd; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.flash { padding: .6rem 1rem; border-radius: 4px; margin: 1rem 0; }
.ok { background: #e5f5e8; } .bad { background: #fbe7e6; }
.held { border: 2px solid #c77700; border-radius: 6px; padding: 0 1rem 1rem; background: #fff8ec; }
.no { color: #b3261e; font-weight: 600; } .yes { color: #256b34; }
form.inline { display: inline; }
button { font: inherit; padding: .3rem .9rem; cursor: pointer; }
button.primary { background: #1f5fbf; color: white; border: 0; border-radius: 4px; }
code, .mono { font-family: ui-monospace, monospace; font-size: .9em; }
td.detail { overflow-wrap: anywhere; } td.at { white-space: nowrap; }
.muted { color: #5b6672; }
";

/// Everything the console's main page shows.
pub(super) struct Dashboard {
    /// Who is signed in, and what they may do.
    pub(super) caller: String,
    pub(super) rights: Vec<CallerRight>,
    /// The session's CSRF token, for the page's forms (none: signed in by header).
    pub(super) csrf: Option<String>,
    pub(super) flash: Option<Flash>,
    /// The last periodic run, if it was held: its audit log entry's detail
    /// (plan id, reasons, counts per target), which outlives a restart.
    pub(super) held: Option<Value>,
    /// A plan approved for the next run, and by whom.
    pub(super) approved: Option<(String, String)>,
    pub(super) comparison: Option<Comparison>,
    pub(super) live: SystemsLive,
    pub(super) runs: Vec<AuditEntry>,
    pub(super) audit: Vec<AuditEntry>,
    pub(super) cases: Vec<ReviewCase>,
    pub(super) quarantine: Vec<Quarantined>,
    /// Why parts of the page are missing (the hub stayed busy), if they are.
    pub(super) busy: Option<String>,
}

/// At most this many quarantined records are listed (the count says how many there are).
const QUARANTINE_ROWS: usize = 200;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · HR hub" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body { (body) }
        }
    }
}

/// The sign-in page, with what went wrong with the last attempt.
pub(super) fn login(problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            header { h1 { "HR hub console" } }
            @if let Some(problem) = problem { p.flash.bad role="alert" { (problem) } }
            form method="post" action="/ui/login" {
                p { label for="token" { "Your API token (a caller's token from the hub's configuration)" } }
                p { input #token type="password" name="token" autocomplete="current-password" required size="50"; }
                p { button.primary type="submit" { "Sign in" } }
            }
        },
    )
}

/// A form that posts to `action` with the session's CSRF token and `fields`.
fn action_form(action: &str, csrf: Option<&str>, fields: &[(&str, &str)], label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            @if let Some(csrf) = csrf { input type="hidden" name="csrf" value=(csrf); }
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button class=(class) type="submit" { (label) }
        }
    }
}

/// The console's main page.
pub(super) fn dashboard(view: &Dashboard) -> Markup {
    let csrf = view.csrf.as_deref();
    layout(
        "Console",
        html! {
            header {
                h1 { "HR hub console" }
                span { "Signed in as " strong { (view.caller) } " " @if csrf.is_some() { (action_form("/ui/logout", csrf, &[], "Sign out", "")) } }
            }
            @if let Some(flash) = &view.flash { p class={ "flash " (if flash.ok { "ok" } else { "bad" }) } role="status" { (flash.text) } }
            @if let Some(busy) = &view.busy { p.flash.bad role="alert" { (busy) } }
            (held_plan(view))
            (systems(view.comparison.as_ref(), &view.live))
            (runs(&view.runs))
            (cases(&view.cases, view.rights.contains(&CallerRight::Review), csrf))
            (quarantine(&view.quarantine))
            (audit(&view.audit))
        },
    )
}

/// A JSON value as text: strings without their quotes.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn held_plan(view: &Dashboard) -> Markup {
    let Some(plan) = &view.held else {
        return html! {};
    };
    let plan_id = text(&plan["plan_id"]);
    let approved = view.approved.as_ref().filter(|(id, _)| *id == plan_id);
    html! {
        section.held #held {
            h2 { "Held for approval: plan " code { (plan_id) } }
            @if plan["repairs"] == true {
                p { "The repairs the last periodic run found would change more than " code { "[safety]" } " lets a run change unseen, so they were not sent (the run's own changes were):" }
            } @else {
                p { "The last periodic run would change more than " code { "[safety]" } " lets a run change unseen, so it sent nothing:" }
            }
            table {
                thead { tr { th { "system" } th { "data type" } th { "what" } th.n { "changes" } th.n { "records held" } th.n { "limit" } } }
                tbody {
                    @for reason in plan["hold"].as_array().into_iter().flatten() {
                        tr { td { (text(&reason["target"])) } td { (text(&reason["data_type"])) } td { (text(&reason["kind"]).replace('_', " ")) }
                             td.n { (text(&reason["count"])) } td.n { (text(&reason["records"])) } td.n { (text(&reason["limit"])) } }
                    }
                }
            }
            (planned_changes(&plan["targets"]))
            @if let Some((_, by)) = approved {
                p.yes { "Approved by " (by) ": the next periodic run sends it, if it is still this plan." }
            } @else if view.rights.contains(&CallerRight::Approve) {
                p { (action_form(&format!("/ui/plans/{plan_id}/approve"), view.csrf.as_deref(), &[], "Approve this plan", "primary"))
                    " " span.muted { "The next periodic run sends it if the input and the systems still make this plan; otherwise it is held again, naming what changed." } }
            } @else {
                p.muted { "Your token may not approve plans." }
            }
        }
    }
}

/// Per system and data type, what a plan would change.
fn planned_changes(targets: &Value) -> Markup {
    html! {
        table {
            thead { tr { th { "system" } th { "data type" } @for op in crate::hub::OPERATIONS { th.n { (op) } } } }
            tbody {
                @for (target, types) in targets.as_object().into_iter().flatten() {
                    @for (data_type, counts) in types.as_object().into_iter().flatten() {
                        tr { td { (target) } td { (data_type) } @for op in crate::hub::OPERATIONS { td.n { (text(&counts[op])) } } }
                    }
                }
            }
        }
    }
}

fn systems(comparison: Option<&Comparison>, live: &SystemsLive) -> Markup {
    html! {
        h2 #systems { "Systems" }
        @match comparison {
            None => p.muted { "No comparison yet: the first periodic run compares every system with the hub." },
            Some(comparison) => {
                p.muted { "Compared with the hub's ledger at " (comparison.at.format("%Y-%m-%d %H:%M:%S UTC")) "; lag and last applied read now." }
                table {
                    thead { tr { th { "system" } th { "data type" } th.n { "records" } th.n { "hub" } th { "digest = hub" } th.n { "Kafka lag" } th { "last applied (UTC)" } } }
                    tbody {
                        @for (system, types) in &comparison.systems {
                            @for (data_type, found) in types {
                                @let now = live.get(system).and_then(|l| l.get(data_type)).cloned().unwrap_or_default();
                                (system_row(system, data_type.as_str(), found, &now))
                            }
                        }
                        @for (system, why) in &comparison.unreadable {
                            tr.unreadable { td { (system) } td colspan="6" { span.no { "could not be read: " (why) } } }
                        }
                    }
                }
            }
        }
    }
}

fn system_row(system: &str, data_type: &str, found: &crate::Reconciled, live: &Live) -> Markup {
    html! {
        tr {
            td { (system) } td { (data_type) } td.n { (found.records) } td.n { (found.hub_records) }
            td { @if found.digest_matches { span.yes { "equal" } } @else { span.no { "differs (" (found.drift.len()) " keys)" } } }
            td.n { (live.kafka_lag.map_or("-".to_string(), |n| n.to_string())) }
            td { (live.last_applied.map_or("-".to_string(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string())) }
        }
    }
}

fn runs(runs: &[AuditEntry]) -> Markup {
    html! {
        h2 #runs { "Last runs" }
        @if runs.is_empty() { p.muted { "No periodic run yet." } }
        @else {
            table {
                thead { tr { th { "at (UTC)" } th { "outcome" } th { "plan" } th.n { "changes in the systems" } } }
                tbody {
                    @for run in runs.iter().rev() {
                        tr { td.mono.at { (run.at) } td { (text(&run.detail["outcome"])) @if run.detail["approved"] == true { " (approved)" } }
                             td.mono { (text(&run.detail["plan_id"])) } td.n { (planned_total(&run.detail["targets"])) } }
                    }
                }
            }
        }
    }
}

/// The changes a run's per-target counts add up to (creates, updates and deletes; repairs are among them).
fn planned_total(targets: &Value) -> u64 {
    let types = targets.as_object().into_iter().flatten().flat_map(|(_, types)| types.as_object().into_iter().flatten());
    types.map(|(_, counts)| ["create", "update", "delete"].iter().map(|op| counts[*op].as_u64().unwrap_or(0)).sum::<u64>()).sum()
}

fn cases(cases: &[ReviewCase], may_review: bool, csrf: Option<&str>) -> Markup {
    html! {
        h2 #cases { "Review cases: employees that may be one person" }
        @if cases.is_empty() { p.muted { "No open case." } }
        @for case in cases {
            section.case {
                h3 { code { (case.id) } ": " (case.employees.join(" and ")) }
                p { (case.why) " " span.muted { "(opened " (case.opened_at) ")" } }
                table {
                    thead { tr { th { "employee" } th { "name" } th { "email" } th { "org unit" } th { "grade" } th { "hire date" } th { "status" } } }
                    tbody {
                        @for record in &case.records {
                            tr { @for field in ["id", "name", "email", "org_unit", "grade", "hire_date", "status"] { td { (text(&record[field])) } } }
                        }
                    }
                }
                @if may_review {
                    p { (action_form(&format!("/ui/cases/{}", case.id), csrf, &[("decision", "same")], "Same person", "primary")) " "
                        (action_form(&format!("/ui/cases/{}", case.id), csrf, &[("decision", "different")], "Different people", "")) }
                } @else { p.muted { "Your token may not decide review cases." } }
            }
        }
    }
}

fn quarantine(quarantined: &[Quarantined]) -> Markup {
    html! {
        h2 #quarantine { "Quarantined by the last merge (" (quarantined.len()) ")" }
        @if quarantined.is_empty() { p.muted { "Nothing: every source record was read." } }
        @else {
            table {
                thead { tr { th { "file" } th.n { "line" } th { "record" } th { "reason" } th { "detail" } } }
                tbody {
                    @for q in quarantined.iter().take(QUARANTINE_ROWS) {
                        tr { td.mono { (q.file) } td.n { (q.line) } td.mono { (q.id.as_deref().unwrap_or("-")) } td { (q.reason) } td { (q.detail) } }
                    }
                }
            }
            @if quarantined.len() > QUARANTINE_ROWS { p.muted { "and " (quarantined.len() - QUARANTINE_ROWS) " more: the run's report lists every one." } }
        }
    }
}

fn audit(entries: &[AuditEntry]) -> Markup {
    html! {
        h2 #audit { "Audit log (latest " (entries.len()) ")" }
        table {
            thead { tr { th { "at (UTC)" } th { "who" } th { "action" } th { "detail" } } }
            tbody {
                @for entry in entries.iter().rev() {
                    tr { td.mono.at { (entry.at) } td { (entry.actor) } td { (entry.action) } td.mono.detail { (compact(&entry.detail)) } }
                }
            }
        }
    }
}

/// An audit entry's detail on one line, long lists cut.
fn compact(detail: &Value) -> String {
    let mut text = detail.to_string();
    if text.len() > 400 {
        let cut = (0..=400).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A system the last comparison could not read says so, with why, and
    /// shows no row of findings from an earlier comparison.
    #[test]
    fn a_system_that_could_not_be_read_shows_why_instead_of_findings() {
        let found = crate::Reconciled { records: 3, hub_records: 3, digest_matches: true, drift: Default::default() };
        let comparison = Comparison {
            at: chrono::Utc::now(),
            systems: [("payroll".to_string(), [(hr_core::DataType::Employee, found)].into())].into(),
            unreadable: [("orgchart".to_string(), "cannot read orgchart: <connection refused>".to_string())].into(),
        };
        let page = systems(Some(&comparison), &SystemsLive::new()).into_string();
        assert!(page.contains("could not be read: cannot read orgchart: &lt;connection refused&gt;"), "{page}");
        assert_eq!(page.matches("<td>orgchart</td>").count(), 1, "one row for orgchart, without findings: {page}");
        assert!(page.contains("<td>payroll</td>") && page.contains("equal"), "{page}");
    }
}
