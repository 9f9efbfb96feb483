//! Admin changes persisted beside the routes file, so a restarted router keeps its weights; and
//! the same shape is the document router replicas share through the registry (`--registry`,
//! [`crate::shared`]), with each model's rollout added.
//!
//! Each route's saved weights carry the routes file's weights they were made against: when the
//! file has changed since (someone edited it, or a Helm upgrade rendered new weights), the file
//! wins and the saved change is forgotten.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::RoutesFile;
use crate::rollout::step::Progress;
use crate::rollout::RolloutPlan;
use crate::table::RouteTable;

type Weights = Vec<(String, u32)>;

#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub(crate) struct SavedState {
    pub routes: BTreeMap<String, SavedRoute>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct SavedRoute {
    /// The routes file's weights when the change was made.
    pub base: Weights,
    /// The weights in force, stable version first.
    pub weights: Weights,
    /// The stable version before the last promotion, while nothing else changed since (what
    /// `rollback` returns to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The model's last rollout, in the shared document: what a replica that takes the
    /// rollout's lease over continues from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<SharedRollout>,
}

/// A rollout as replicas share it: which one (`id`, new for each start), its plan, and where it
/// stands.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct SharedRollout {
    pub id: String,
    pub plan: RolloutPlan,
    pub progress: Progress,
}

/// A model's saved weights (stable first) and the stable version before its last promotion.
pub type Restored = (String, Weights, Option<String>);

fn file_weights(file: &RoutesFile, model: &str) -> Option<Weights> {
    file.route.iter().find(|r| r.model == model).map(|r| {
        r.backend
            .iter()
            .map(|b| (b.version.clone(), b.weight))
            .collect()
    })
}

/// The saved weights that still apply to `file`.
pub fn load(path: &Path, file: &RoutesFile) -> Vec<Restored> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let saved: SavedState = match serde_json::from_str(&text) {
        Ok(saved) => saved,
        Err(err) => {
            tracing::warn!(state = %path.display(), error = %err, "ignoring an unreadable router state file");
            return Vec::new();
        }
    };
    applicable(&saved, file)
}

/// The routes of `saved` made against `file`'s weights (and still naming its versions, adding
/// up to 100), with the previous stable version when it is one of them.
pub(crate) fn applicable(saved: &SavedState, file: &RoutesFile) -> Vec<Restored> {
    saved
        .routes
        .iter()
        .filter(|(model, route)| {
            let total: u32 = route.weights.iter().map(|(_, w)| w).sum();
            let mut versions: Vec<&String> = route.weights.iter().map(|(v, _)| v).collect();
            let mut base: Vec<&String> = route.base.iter().map(|(v, _)| v).collect();
            versions.sort();
            base.sort();
            file_weights(file, model).as_ref() == Some(&route.base)
                && versions == base
                && total == 100
        })
        .map(|(model, route)| {
            let previous = route
                .previous
                .clone()
                .filter(|p| route.weights.iter().any(|(v, _)| v == p));
            (model.clone(), route.weights.clone(), previous)
        })
        .collect()
}

/// The weights in `table` of each route `file` has, against the file's weights, with each
/// model's rollout from `rollout`.
pub(crate) fn snapshot(
    file: &RoutesFile,
    table: &RouteTable,
    rollout: impl Fn(&str) -> Option<SharedRollout>,
) -> SavedState {
    let routes = table
        .routes
        .iter()
        .filter_map(|(model, route)| {
            Some((
                model.clone(),
                SavedRoute {
                    base: file_weights(file, model)?,
                    weights: route.weights(),
                    previous: route.previous.clone(),
                    rollout: rollout(model),
                },
            ))
        })
        .collect();
    SavedState { routes }
}

/// Saves the weights now in force; a router on a read-only disk keeps working and says so.
pub fn save(path: &Path, file: &RoutesFile, table: &RouteTable) {
    let text = match serde_json::to_string_pretty(&snapshot(file, table, |_| None)) {
        Ok(text) => text,
        Err(err) => {
            tracing::error!(error = %err, "cannot encode the router state");
            return;
        }
    };
    let temporary = path.with_extension("json.tmp");
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(err) = written {
        tracing::warn!(state = %path.display(), error = %err, "cannot persist router weights; they will not survive a restart");
    }
}
