//! Experiment tracking speaking MLflow's REST API (not built yet; see issue 6).
