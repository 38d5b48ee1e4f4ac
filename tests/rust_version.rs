//! The declared minimum Rust version is true: every package of the
//! workspace declares it, and no locked dependency built for this platform
//! needs a newer one (only one toolchain is installed here, so the lock's
//! `rust-version` fields are what can be compared).

use std::process::Command;

/// `1.89` or `1.88.0` as (major, minor, patch).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap_or_else(|_| panic!("not a Rust version: {text}")));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn every_package_declares_the_rust_version_every_locked_dependency_builds_with() {
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout).lines().find_map(|l| l.strip_prefix("host: ").map(str::to_string)).expect("rustc names its host");
    let output =
        Command::new(env!("CARGO")).args(["metadata", "--format-version", "1", "--locked", "--filter-platform", &host]).output().expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let members: Vec<&str> = metadata["workspace_members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    // The packages this platform builds: those in the resolved graph.
    let built: Vec<&str> = metadata["resolve"]["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    let packages: Vec<&serde_json::Value> = metadata["packages"].as_array().unwrap().iter().filter(|p| built.contains(&p["id"].as_str().unwrap())).collect();
    let (ours, theirs): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = packages.iter().partition(|p| members.contains(&p["id"].as_str().unwrap()));
    let declared = ours[0]["rust_version"].as_str().expect("the workspace declares rust-version");
    for package in &ours {
        assert_eq!(package["rust_version"].as_str(), Some(declared), "{} does not declare rust-version.workspace = true", package["name"]);
    }
    let newer: Vec<String> = theirs
        .iter()
        .filter_map(|p| Some((p["name"].as_str()?, p["version"].as_str()?, p["rust_version"].as_str()?)))
        .filter(|(_, _, needs)| version(needs) > version(declared))
        .map(|(name, v, needs)| format!("{name} {v} needs Rust {needs}"))
        .collect();
    assert!(newer.is_empty(), "the workspace declares rust-version {declared}, but {newer:?}");
}
