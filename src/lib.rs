//! # hr-sync
//!
//! Facade over the workspace: [`hr_core`] (schema, merge, ledger, traits),
//! [`hr_transport_kafka`] and [`hr_transport_rest`], plus the synthetic
//! dataset generator the examples, tests and benchmarks share.
#![warn(missing_docs)]

pub use hr_core;
pub use hr_transport_kafka;
pub use hr_transport_rest;

pub mod config;
pub mod console;
pub mod generate;
pub mod hub;
pub mod scenario;
pub mod system;

pub(crate) const A_EMP: &str = hr_core::import::A_EMPLOYEES;
pub(crate) const A_DEPT: &str = hr_core::import::A_DEPARTMENTS;
pub(crate) const B_EMP: &str = hr_core::import::B_EMPLOYEES;
pub(crate) const B_ORG: &str = hr_core::import::B_ORG_UNITS;
