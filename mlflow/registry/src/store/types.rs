//! What the registry stores, as MLflow's REST API writes it (the handlers serialise these
//! as they are), and the approval workflow's records.

use serde::Serialize;

use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alias {
    pub alias: String,
    /// MLflow sends versions as strings.
    pub version: String,
}

/// A model version as MLflow's REST API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub user_id: String,
    pub current_stage: String,
    pub description: String,
    pub source: String,
    pub run_id: String,
    /// The MLflow 3 logged model this version was registered from, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model_id: String,
    /// Where the files are: the source itself, or for a `models:/<model_id>` source the logged
    /// model's artifact location.
    pub storage_location: String,
    /// Always `READY` once stored: the client polls anything else for minutes.
    pub status: String,
    pub tags: Vec<Tag>,
    pub aliases: Vec<String>,
}

/// A registered model as MLflow's REST API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub description: String,
    pub tags: Vec<Tag>,
    pub aliases: Vec<Alias>,
    pub latest_versions: Vec<ModelVersion>,
}

/// What a new version carries.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    pub source: String,
    pub run_id: String,
    pub description: String,
    pub user_id: String,
    pub tags: Vec<Tag>,
    /// Digest of the artifact files (see `artifacts::digest`); empty when the source is not in
    /// this registry's artifact store.
    pub sha256: String,
    pub model_id: String,
    /// Where the files are, when that differs from `source` (see [`ModelVersion`]).
    pub storage_location: String,
    /// The files copied into content-addressed storage at registration (see `versions`);
    /// recorded with the version in one transaction. Empty for sources outside the store.
    pub files: Vec<VersionFile>,
}

/// One file of a registered version: where it sits in the version, and the blob (by sha256)
/// holding its bytes, which no artifact write can change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// Where a version stands in the approval workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalStatus {
    pub name: String,
    pub version: String,
    pub creator: String,
    pub required_approvals: u32,
    /// People whose latest decision is an approval.
    pub approved_by: Vec<String>,
    /// People whose latest decision is a rejection; any one blocks approval.
    pub rejected_by: Vec<String>,
    pub requested_by: Vec<String>,
    pub approved: bool,
}

impl ApprovalStatus {
    /// What stands between the version and approval, for refusals.
    pub fn explain(&self) -> String {
        if !self.rejected_by.is_empty() {
            return format!("rejected by {}", self.rejected_by.join(", "));
        }
        let who = if self.approved_by.is_empty() {
            "nobody yet".to_owned()
        } else {
            self.approved_by.join(", ")
        };
        format!(
            "{} of {} required approvals (approved by {who}; approvers must not be its creator {})",
            self.approved_by.len(),
            self.required_approvals,
            if self.creator.is_empty() {
                "(unknown)"
            } else {
                &self.creator
            }
        )
    }
}

/// A decision in the approval workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Request,
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Request => "request",
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        [Decision::Request, Decision::Approve, Decision::Reject]
            .into_iter()
            .find(|d| d.as_str() == text)
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "unknown approval action '{text}'; use request, approve or reject"
                ))
            })
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub timestamp: i64,
    pub user: String,
    pub action: String,
    pub model: String,
    pub version: String,
    pub before: String,
    pub after: String,
}
