//! # hr-demo
//!
//! What the `hr-sync` examples and end-to-end tests are made of, kept out of
//! the library crates: the seed's [`scenario`] (a hub, three target systems,
//! a periodic full sync, real-time changes and a delta run) and the
//! [`console`] output (progress bars or timestamped lines, and the `tracing`
//! subscriber a program installs once in `main`).
#![warn(missing_docs)]

pub mod console;
pub mod scenario;
