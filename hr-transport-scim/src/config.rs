//! The directories to provision and what may go wrong setting them up.

use hr_core::{DataType, FieldScope, Sensitive};
use std::path::PathBuf;
use std::time::Duration;

/// One identity directory: a SCIM 2.0 service provider.
#[derive(Clone)]
pub struct ScimTarget {
    /// The target's name in the routing policy.
    pub name: String,
    /// The SCIM base URL (`https://directory.example/scim/v2`), without a trailing `/`.
    pub base_url: String,
    /// The bearer token, if the directory asks for one.
    pub token: Option<Sensitive<String>>,
    /// What it receives: [`DataType::Employee`] (as Users) and [`DataType::OrgUnit`] (as Groups).
    pub data_types: Vec<DataType>,
    /// The employee fields it goes without (its phone numbers, typically).
    pub fields: FieldScope,
    /// Deletes a leaver's User instead of deactivating it (`active: false`).
    pub delete_leavers: bool,
    /// Lets `base_url` be plain `http://` to a host that is not loopback.
    pub allow_insecure_http: bool,
    /// Sends changes in SCIM Bulk requests where the directory announces
    /// them (default); `false` sends one request per change.
    pub bulk: bool,
}

impl ScimTarget {
    /// A directory receiving `data_types`, every field, leavers deactivated.
    pub fn new(name: &str, base_url: &str, data_types: Vec<DataType>) -> Self {
        ScimTarget {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            token: None,
            data_types,
            fields: FieldScope::full(),
            delete_leavers: false,
            allow_insecure_http: false,
            bulk: true,
        }
    }

    /// This target with a bearer token.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(Sensitive::new(token.to_string()));
        self
    }

    /// This target without the fields `fields` omits.
    pub fn with_fields(mut self, fields: FieldScope) -> Self {
        self.fields = fields;
        self
    }

    /// This target deleting leavers' Users instead of deactivating them.
    pub fn with_delete_leavers(mut self, delete: bool) -> Self {
        self.delete_leavers = delete;
        self
    }

    /// This target sending changes in Bulk requests where the directory
    /// announces them (`true`, the default), or one request per change.
    pub fn with_bulk(mut self, bulk: bool) -> Self {
        self.bulk = bulk;
        self
    }

    /// This target allowing plain `http://` off loopback.
    pub fn with_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }
}

// The token never shows.
impl std::fmt::Debug for ScimTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimTarget")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| hr_core::REDACTED))
            .field("data_types", &self.data_types)
            .field("delete_leavers", &self.delete_leavers)
            .field("bulk", &self.bulk)
            .finish_non_exhaustive()
    }
}

/// The SCIM transport's settings.
#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// The directories.
    pub targets: Vec<ScimTarget>,
    /// Where each key's SCIM id is remembered (a directory's ids are its
    /// own); the hub keeps it beside its ledger.
    pub id_store: PathBuf,
    /// Timeout of one HTTP request (default 10 s).
    pub request_timeout: Duration,
    /// The most one answer may hold (default 64 MiB).
    pub max_answer_bytes: usize,
    /// Resources per page when reading a directory back (default 500; a
    /// provider may answer fewer).
    pub page_size: usize,
    /// PEM of an extra CA to trust (a private PKI).
    pub ca_pem: Option<Vec<u8>>,
}

impl ScimConfig {
    /// Defaults for `targets`, remembering ids in `id_store`.
    pub fn new(targets: Vec<ScimTarget>, id_store: impl Into<PathBuf>) -> Self {
        ScimConfig { targets, id_store: id_store.into(), request_timeout: Duration::from_secs(10), max_answer_bytes: 64 << 20, page_size: 500, ca_pem: None }
    }
}

/// Why the SCIM transport cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScimTransportError {
    /// A target's URL cannot be used.
    #[error("SCIM target {target}: base URL {url:?}: {problem}")]
    Url {
        /// The target.
        target: String,
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        problem: hr_http::UrlProblem,
    },
    /// A target is to receive a data type SCIM has no resource for.
    #[error("SCIM target {target} cannot receive {data_type}: a directory takes employees (Users) and org units (Groups) only")]
    UnsupportedType {
        /// The target.
        target: String,
        /// The data type.
        data_type: DataType,
    },
    /// The CA file is not PEM.
    #[error("the CA to trust is not usable PEM: {0}")]
    Ca(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The id store's file cannot be created.
    #[error("SCIM id store {path}: {source}")]
    IdStoreFile {
        /// Its path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The id store cannot be opened or written.
    #[error("SCIM id store {path}: {source}")]
    IdStore {
        /// Its path.
        path: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
}
