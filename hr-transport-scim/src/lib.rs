//! # hr-transport-scim
//!
//! Provisions identity directories (Entra ID, Okta, Keycloak, any SaaS with
//! a SCIM endpoint) over SCIM 2.0 ([RFC 7643], [RFC 7644]): employees become
//! Users with the enterprise extension, org units become Groups.
//!
//! # Contents
//!
//! - [The model](#the-model): what a directory is to the hub.
//! - [Writing](#writing): create, change, leavers, managers, groups.
//! - [Reading back](#reading-back): how drift is found.
//! - [Example](#example).
//!
//! # The model
//!
//! A directory is a target like any other: the hub's [`Router`] hands
//! [`ScimPropagator`] the changes of the data types the target receives
//! (employees and org units), already numbered by the hub's ledger; the
//! propagator writes them and answers once the directory holds them, so
//! its [`Receipt`] is applied on return, as REST's is. A directory does not
//! know the hub's versions, so the propagator remembers, per key, the
//! directory's own id of the resource, its ETag, the version and content
//! hash last applied, and the attributes it wrote, in an id store (one
//! SQLite file beside the hub's ledger). A change at a version the
//! directory already has is not sent again.
//!
//! The attribute mapping:
//!
//! | record field | SCIM attribute |
//! |---|---|
//! | `id` | `externalId`, enterprise `employeeNumber` |
//! | `email` (else `id`) | `userName`, `emails[type eq "work"]` |
//! | `name` | `displayName`, `name.formatted` |
//! | `phone` (where the field scope allows) | `phoneNumbers[type eq "work"]` |
//! | `status` | `active` (`false` when terminated) |
//! | `company` | enterprise `organization` |
//! | `org_unit` | enterprise `department`, and membership of the unit's Group |
//! | `manager` | enterprise `manager.value`: the manager's SCIM id |
//! | org unit `id`, `name` | Group `externalId`, `displayName` |
//!
//! # Writing
//!
//! - Each directory's `/ServiceProviderConfig` is read once: PATCH, ETags
//!   and Bulk are used where it announces them.
//! - Where a directory takes Bulk requests, a batch's creates and changes,
//!   the managers completed after them and the Group memberships travel in
//!   Bulk requests within its `maxOperations` and `maxPayloadSize`; an
//!   operation it refuses there (a 409, 404 or 412) is done again on its
//!   own as below, and a Bulk request refused as a whole is sent one
//!   request at a time. [`ScimTarget::bulk`] `= false` sends one request
//!   per change.
//! - A new key is a POST. A 409 (uniqueness) adopts the directory's resource
//!   with the same `externalId`, else `userName` (Groups: `displayName`),
//!   never creating a second; its attributes are then brought in line.
//! - A changed key is a PATCH of the attributes that changed (a PUT where
//!   the directory has no PATCH), with `If-Match` where ETags are supported;
//!   a 412 re-reads the resource and retries once. A 404 (deleted by hand)
//!   creates it again.
//! - A leaver (terminated, or deleted from the source) is deactivated
//!   (`active: false`), never deleted, unless the target sets
//!   [`ScimTarget::delete_leavers`].
//! - Managers are named by SCIM id: a User written before its manager's is
//!   completed once the manager's exists. A reference that would close a
//!   cycle of managers is refused (the User is written without it, a
//!   warning and `hr_scim_manager_cycles_total` say so).
//! - Group membership follows `org_unit`: one PATCH per Group per batch.
//!
//! # Reading back
//!
//! [`ScimPropagator`] is a [`TargetReader`]: it lists the directory's Users
//! and Groups page by page and, for every key it wrote, reports the hub's
//! own digest entry if the resource still holds the attributes written, an
//! entry with another content hash if someone edited it, and none if it is
//! gone. The hub computes the digests, so a User deleted or edited by hand
//! is found by reconciliation and written again by the next run. Group
//! membership is not compared.
//!
//! # Example
//!
//! ```no_run
//! use hr_core::{DataType, Propagator};
//! use hr_transport_scim::{ScimConfig, ScimPropagator, ScimTarget};
//! # async fn run(batch: Vec<hr_core::ChangeEnvelope>) -> Result<(), Box<dyn std::error::Error>> {
//! let directory = ScimTarget::new("directory", "https://directory.example/scim/v2", vec![DataType::Employee, DataType::OrgUnit])
//!     .with_token(&std::env::var("DIRECTORY_TOKEN")?);
//! let scim = ScimPropagator::new(ScimConfig::new(vec![directory], "data/scim-ids.sqlite3"))?;
//! scim.propagate(&batch).await?;
//! # Ok(()) }
//! ```
//!
//! [RFC 7643]: https://www.rfc-editor.org/rfc/rfc7643
//! [RFC 7644]: https://www.rfc-editor.org/rfc/rfc7644
//! [`Router`]: hr_core::Router
//! [`Receipt`]: hr_core::Receipt
//! [`TargetReader`]: hr_core::TargetReader

#![warn(missing_docs, unreachable_pub)]

mod bulk;
mod client;
mod config;
mod ids;
mod mapping;

pub use client::ScimPropagator;
pub use config::{ScimConfig, ScimTarget, ScimTransportError};
