//! The approval workflow: requests, approvals (never by a version's creator) and rejections,
//! and how many approvals a model's versions need.

use weir_sql::{params, Sql};

use super::models::require_model;
use super::versions::{parse_version, read_model_version};
use super::{now_ms, ApprovalStatus, Decision, Store, StoreError};

impl Store {
    /// Records a decision on a version: a request for review, an approval (never by its
    /// creator), or a rejection (which stands until the same person approves).
    pub fn decide(
        &self,
        actor: &str,
        name: &str,
        version: &str,
        decision: Decision,
        comment: &str,
    ) -> Result<ApprovalStatus, StoreError> {
        let number = parse_version(version)?;
        self.write(actor, decision.as_str(), name, version, |db| {
            let creator = read_model_version(db, name, number)?.user_id;
            if decision == Decision::Approve && !creator.is_empty() && creator == actor {
                return Err(StoreError::PermissionDenied(format!(
                    "{actor} created version {version} of '{name}' and cannot approve it; another person must"
                )));
            }
            db.execute(
                "INSERT INTO approval_decisions (name, version, user_id, decision, comment, timestamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, number, actor, decision.as_str(), comment, now_ms()],
            )?;
            Ok((approval_status(db, name, number)?, String::new(), comment.to_owned()))
        })
    }

    pub fn approval_status(&self, name: &str, version: &str) -> Result<ApprovalStatus, StoreError> {
        let number = parse_version(version)?;
        self.read(|db| approval_status(db, name, number))
    }

    /// Sets how many approvals (from people other than the creator) a model's versions need.
    pub fn set_required_approvals(
        &self,
        actor: &str,
        name: &str,
        required: u32,
    ) -> Result<(), StoreError> {
        if required == 0 {
            return Err(StoreError::InvalidParameter(
                "required_approvals must be at least 1".to_owned(),
            ));
        }
        self.write(actor, "set_approval_policy", name, "", |db| {
            require_model(db, name)?;
            let before = required_approvals(db, name)?;
            db.execute(
                "INSERT INTO approval_policies (name, required_approvals) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET required_approvals = excluded.required_approvals",
                params![name, required],
            )?;
            Ok(((), before.to_string(), required.to_string()))
        })
    }
}

fn required_approvals(db: &mut dyn Sql, name: &str) -> Result<u32, StoreError> {
    Ok(db
        .query_value(
            "SELECT required_approvals FROM approval_policies WHERE name = ?1",
            params![name],
        )?
        .unwrap_or(1))
}

/// Each person's latest decision counts; the creator's approvals never do.
pub(super) fn approval_status(
    db: &mut dyn Sql,
    name: &str,
    version: i64,
) -> Result<ApprovalStatus, StoreError> {
    let creator = read_model_version(db, name, version)?.user_id;
    let mut latest: Vec<(String, String)> = Vec::new();
    let mut requested_by = Vec::new();
    let rows = db.query(
        "SELECT user_id, decision FROM approval_decisions WHERE name = ?1 AND version = ?2 ORDER BY id",
        params![name, version],
    )?;
    for row in &rows {
        let (user, decision): (String, String) = (row.get(0)?, row.get(1)?);
        if decision == "request" {
            if !requested_by.contains(&user) {
                requested_by.push(user);
            }
            continue;
        }
        latest.retain(|(u, _)| *u != user);
        latest.push((user, decision));
    }
    let approved_by: Vec<String> = latest
        .iter()
        .filter(|(u, d)| d == "approve" && *u != creator)
        .map(|(u, _)| u.clone())
        .collect();
    let rejected_by: Vec<String> = latest
        .iter()
        .filter(|(_, d)| d == "reject")
        .map(|(u, _)| u.clone())
        .collect();
    let required = required_approvals(db, name)?;
    Ok(ApprovalStatus {
        name: name.to_owned(),
        version: version.to_string(),
        approved: rejected_by.is_empty() && approved_by.len() >= required as usize,
        creator,
        required_approvals: required,
        approved_by,
        rejected_by,
        requested_by,
    })
}

#[cfg(test)]
mod tests;
