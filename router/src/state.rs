//! Admin changes persisted beside the routes file, so a restarted router keeps its weights.
//!
//! Each route's saved weights carry the routes file's weights they were made against: when the
//! file has changed since (someone edited it, or a Helm upgrade rendered new weights), the file
//! wins and the saved change is forgotten.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::RoutesFile;
use crate::table::RouteTable;

type Weights = Vec<(String, u32)>;

#[derive(Serialize, Deserialize, Default)]
struct SavedState {
    routes: BTreeMap<String, SavedRoute>,
}

#[derive(Serialize, Deserialize)]
struct SavedRoute {
    /// The routes file's weights when the change was made.
    base: Weights,
    /// The weights in force, stable version first.
    weights: Weights,
    /// The stable version before the last promotion, while nothing else changed since (what
    /// `rollback` returns to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
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
    saved
        .routes
        .into_iter()
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
                .filter(|p| route.weights.iter().any(|(v, _)| v == p));
            (model, route.weights, previous)
        })
        .collect()
}

/// Saves the weights now in force; a router on a read-only disk keeps working and says so.
pub fn save(path: &Path, file: &RoutesFile, table: &RouteTable) {
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
                },
            ))
        })
        .collect();
    let text = match serde_json::to_string_pretty(&SavedState { routes }) {
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
