//! What the models templates show, built from the registry's records: links (model names are
//! free text, so every URL is built here, percent-encoded, never in a template), approval
//! badges, the decisions with their comments, and which forms a viewer gets.

use serde::Serialize;
use weir_registry::store::{ApprovalStatus, AuditEntry, ModelVersion};

/// A URL path segment: everything but RFC 3986's unreserved characters percent-encoded, so a
/// name holding `/`, `?`, `#` or `%` stays one segment and means itself.
pub(super) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub(super) fn model_href(name: &str) -> String {
    format!("/ui/models/{}", segment(name))
}

pub(super) fn version_href(name: &str, version: &str) -> String {
    format!("{}/versions/{}", model_href(name), segment(version))
}

/// A version number as the store keeps it: a positive integer, read the way the page's path
/// gives it. Anything else names no version (404), rather than the store's 400.
pub(super) fn version_number(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|n| *n > 0)
}

/// The run a version was registered from: its `run_id`, or the run in a `runs:/RUN/path`
/// source (what older clients send without a run id).
pub(super) fn source_run_id(version: &ModelVersion) -> Option<String> {
    if !version.run_id.is_empty() {
        return Some(version.run_id.clone());
    }
    let rest = version.source.strip_prefix("runs:/")?;
    let run = rest.split('/').next().unwrap_or_default();
    (!run.is_empty()).then(|| run.to_owned())
}

/// A link to a run page of this server's tracking store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct RunLink {
    pub run_id: String,
    pub href: String,
}

impl RunLink {
    pub(super) fn new(experiment_id: &str, run_id: &str) -> RunLink {
        RunLink {
            run_id: run_id.to_owned(),
            href: format!(
                "/ui/experiments/{}/runs/{}",
                segment(experiment_id),
                segment(run_id)
            ),
        }
    }
}

/// A one-word approval state and its badge class (`.badge.ok|warn|bad`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Badge {
    pub label: String,
    pub class: &'static str,
}

pub(super) fn approval_badge(status: &ApprovalStatus) -> Badge {
    if !status.rejected_by.is_empty() {
        Badge {
            label: "rejected".to_owned(),
            class: "bad",
        }
    } else if status.approved {
        Badge {
            label: "approved".to_owned(),
            class: "ok",
        }
    } else {
        Badge {
            label: format!(
                "{} of {} approvals",
                status.approved_by.len(),
                status.required_approvals
            ),
            class: "warn",
        }
    }
}

/// One row of a model's versions table.
#[derive(Debug, Clone, Serialize)]
pub(super) struct VersionRow {
    pub version: String,
    pub href: String,
    pub source: String,
    pub run: Option<RunLink>,
    /// The run id when the run is not one of this server's (no link).
    pub run_id: Option<String>,
    pub digest: String,
    pub status: String,
    pub creator: String,
    pub created: i64,
    pub approval: Badge,
    pub aliases: Vec<String>,
}

/// An alias of a model and where it points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct AliasView {
    pub alias: String,
    pub version: String,
    pub href: String,
    pub protected: bool,
}

/// One decision on a version (request, approve, reject) with its comment, from the audit log,
/// where the store writes each decision's comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct DecisionView {
    pub user: String,
    pub decision: String,
    pub comment: String,
    pub timestamp: i64,
}

/// Whether an audit entry is about version `number` (the log keeps versions as the caller wrote
/// them, so `"01"` and `"1"` are the same version).
pub(super) fn about_version(entry: &AuditEntry, number: u64) -> bool {
    version_number(&entry.version) == Some(number)
}

/// The decisions on a version, oldest first, from its audit entries (newest first).
pub(super) fn decisions(entries: &[AuditEntry]) -> Vec<DecisionView> {
    entries
        .iter()
        .rev()
        .filter(|e| matches!(e.action.as_str(), "request" | "approve" | "reject"))
        .map(|e| DecisionView {
            user: e.user.clone(),
            decision: e.action.clone(),
            comment: e.after.clone(),
            timestamp: e.timestamp,
        })
        .collect()
}

/// The approve/reject forms for a viewer: absent without the role; replaced by the reason for
/// the version's creator, whom the store refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Decide {
    Hidden,
    Creator,
    Shown,
}

/// Which forms of a version page a viewer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct Actions {
    pub decide: Decide,
    pub request: bool,
    pub move_alias: bool,
}

/// `viewer` is the signed-in name, `None` in anonymous mode, where who acts is typed into
/// each form (so the store's creator rule is the only judge there).
pub(super) fn actions(
    can_approve: bool,
    can_submit: bool,
    viewer: Option<&str>,
    creator: &str,
) -> Actions {
    let decide = match viewer {
        _ if !can_approve => Decide::Hidden,
        Some(name) if !creator.is_empty() && name == creator => Decide::Creator,
        _ => Decide::Shown,
    };
    Actions {
        decide,
        request: can_submit,
        move_alias: can_approve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(approved_by: &[&str], rejected_by: &[&str], approved: bool) -> ApprovalStatus {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        ApprovalStatus {
            name: "iris".into(),
            version: "1".into(),
            creator: "sam".into(),
            required_approvals: 2,
            approved_by: names(approved_by),
            rejected_by: names(rejected_by),
            requested_by: Vec::new(),
            approved,
        }
    }

    #[test]
    fn segments_keep_names_in_one_path_segment() {
        assert_eq!(segment("iris-v2_x.y~"), "iris-v2_x.y~");
        assert_eq!(segment("a/b c?#%"), "a%2Fb%20c%3F%23%25");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(version_href("a/b", "3"), "/ui/models/a%2Fb/versions/3");
        assert_eq!(RunLink::new("1", "abc").href, "/ui/experiments/1/runs/abc");
    }

    #[test]
    fn only_positive_integers_name_versions() {
        assert_eq!(version_number("3"), Some(3));
        assert_eq!(version_number("03"), Some(3));
        for bad in ["0", "-1", "x", "", "1.0"] {
            assert_eq!(version_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_source_run_comes_from_run_id_or_a_runs_uri() {
        let mut version = ModelVersion {
            name: "iris".into(),
            version: "1".into(),
            creation_timestamp: 0,
            last_updated_timestamp: 0,
            user_id: String::new(),
            current_stage: "None".into(),
            description: String::new(),
            source: "runs:/r1/model".into(),
            run_id: String::new(),
            model_id: String::new(),
            storage_location: String::new(),
            status: "READY".into(),
            tags: Vec::new(),
            aliases: Vec::new(),
        };
        assert_eq!(source_run_id(&version).as_deref(), Some("r1"));
        version.run_id = "r2".into();
        assert_eq!(source_run_id(&version).as_deref(), Some("r2"));
        version.run_id.clear();
        version.source = "mlflow-artifacts:/x/model".into();
        assert_eq!(source_run_id(&version), None);
        version.source = "runs:/".into();
        assert_eq!(source_run_id(&version), None);
    }

    #[test]
    fn badges_put_a_rejection_before_everything() {
        assert_eq!(approval_badge(&status(&["a"], &["b"], false)).class, "bad");
        assert_eq!(approval_badge(&status(&["a", "b"], &[], true)).class, "ok");
        let pending = approval_badge(&status(&["a"], &[], false));
        assert_eq!(
            (pending.label.as_str(), pending.class),
            ("1 of 2 approvals", "warn")
        );
    }

    #[test]
    fn decisions_are_read_oldest_first_with_their_comments() {
        let entry = |id, action: &str, after: &str| AuditEntry {
            id,
            timestamp: id,
            user: "avery".into(),
            action: action.into(),
            model: "iris".into(),
            version: "1".into(),
            before: String::new(),
            after: after.into(),
        };
        let newest_first = [
            entry(3, "approve", "looks good"),
            entry(2, "set_alias", "production=1"),
            entry(1, "request", "please"),
        ];
        let seen = decisions(&newest_first);
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].decision.as_str(), seen[0].comment.as_str()),
            ("request", "please")
        );
        assert_eq!(seen[1].comment, "looks good");
        assert!(about_version(&entry(1, "x", ""), 1));
        assert!(!about_version(&entry(1, "x", ""), 2));
    }

    #[test]
    fn forms_follow_roles_and_the_creator_rule() {
        let approver = actions(true, false, Some("avery"), "sam");
        assert_eq!(approver.decide, Decide::Shown);
        assert!(approver.move_alias && !approver.request);
        // The creator holding the approver role gets the reason, not the button.
        assert_eq!(
            actions(true, true, Some("cody"), "cody").decide,
            Decide::Creator
        );
        let submitter = actions(false, true, Some("sam"), "sam");
        assert_eq!(submitter.decide, Decide::Hidden);
        assert!(submitter.request && !submitter.move_alias);
        let reader = actions(false, false, Some("rita"), "sam");
        assert_eq!(
            (reader.decide, reader.request, reader.move_alias),
            (Decide::Hidden, false, false)
        );
        // Anonymous: who acts is typed in the form; the store judges.
        assert_eq!(actions(true, true, None, "sam").decide, Decide::Shown);
        // An unknown creator (empty) is nobody's version.
        assert_eq!(actions(true, true, Some("ada"), "").decide, Decide::Shown);
    }
}
