use std::collections::HashMap;

use super::*;
use crate::filter::{Filter, OrderBy};

/// Runs a check against a fresh store on SQLite and, when configured, on PostgreSQL.
fn each_store(tag: &str, check: impl Fn(&TrackingStore)) {
    for db in weir_sql::testing::each(tag) {
        check(&TrackingStore::open(&db.url).unwrap());
    }
}

fn metric(key: &str, value: f64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp: 1_000 + step,
        step,
    }
}

fn new_run(store: &TrackingStore, experiment_id: &str) -> Run {
    store
        .create_run(&NewRun {
            experiment_id: experiment_id.into(),
            user_id: "alice".into(),
            ..NewRun::default()
        })
        .unwrap()
}

#[test]
fn experiments_default_create_rename_delete_and_search() {
    each_store("t_experiments", |store| {
        assert_eq!(store.get_experiment("0").unwrap().name, "Default");
        let id = store
            .create_experiment("iris", None, &[KeyValue::new("team", "ml")])
            .unwrap();
        let experiment = store.get_experiment_by_name("iris").unwrap();
        assert_eq!(experiment.experiment_id, id);
        assert_eq!(
            experiment.artifact_location,
            format!("mlflow-artifacts:/{id}")
        );
        assert_eq!(experiment.tags, [KeyValue::new("team", "ml")]);
        assert!(matches!(
            store.create_experiment("iris", None, &[]),
            Err(TrackingError::AlreadyExists(_))
        ));
        assert!(matches!(
            store.get_experiment_by_name("nope"),
            Err(TrackingError::NotFound(_))
        ));
        assert!(matches!(
            store.get_experiment("x"),
            Err(TrackingError::InvalidParameter(_))
        ));
        store.create_experiment("wine", None, &[]).unwrap();
        store.rename_experiment(&id, "iris-2").unwrap();
        let filter = Filter::parse("name LIKE 'iris%'").unwrap();
        let (found, next) = store
            .search_experiments(ViewType::ActiveOnly, &filter, &[], 10, 0)
            .unwrap();
        assert_eq!(
            (found.len(), found[0].name.as_str(), next),
            (1, "iris-2", None)
        );
        store.set_experiment_lifecycle(&id, true).unwrap();
        let (active, _) = store
            .search_experiments(ViewType::ActiveOnly, &Filter::default(), &[], 10, 0)
            .unwrap();
        assert!(active.iter().all(|e| e.experiment_id != id));
        let (deleted, _) = store
            .search_experiments(ViewType::DeletedOnly, &Filter::default(), &[], 10, 0)
            .unwrap();
        assert_eq!(deleted[0].experiment_id, id);
        assert!(store.set_experiment_lifecycle("0", true).is_err());
    });
}

#[test]
fn runs_carry_names_artifact_uris_params_tags_and_latest_metrics() {
    each_store("t_runs", |store| {
        let id = store.create_experiment("exp", None, &[]).unwrap();
        let run = new_run(store, &id);
        let run_id = run.info.run_id.clone();
        assert_eq!(
            run.info.artifact_uri,
            format!("mlflow-artifacts:/{id}/{run_id}/artifacts")
        );
        assert!(!run.info.run_name.is_empty());
        assert!(run
            .data
            .tags
            .contains(&KeyValue::new("mlflow.runName", &run.info.run_name)));
        assert_eq!(
            (run.info.status.as_str(), run.info.user_id.as_str()),
            ("RUNNING", "alice")
        );

        let history: Vec<Metric> = (0..10)
            .map(|s| metric("loss", 1.0 / (s + 1) as f64, s))
            .collect();
        store
            .log_batch(
                &run_id,
                &history,
                &[KeyValue::new("lr", "0.01")],
                &[KeyValue::new("team", "ml")],
            )
            .unwrap();
        // An older step logged later does not move the latest value back.
        store
            .log_batch(&run_id, &[metric("loss", 7.0, 3)], &[], &[])
            .unwrap();
        store
            .log_batch(&run_id, &[metric("acc", f64::NAN, 0)], &[], &[])
            .unwrap();
        let run = store.get_run(&run_id).unwrap();
        let latest: HashMap<&str, &Metric> = run
            .data
            .metrics
            .iter()
            .map(|m| (m.key.as_str(), m))
            .collect();
        assert_eq!((latest["loss"].step, latest["loss"].value), (9, 0.1));
        assert!(latest["acc"].value.is_nan());
        assert_eq!(run.data.params, [KeyValue::new("lr", "0.01")]);

        // Params are write-once; the same value again is fine.
        store
            .log_batch(&run_id, &[], &[KeyValue::new("lr", "0.01")], &[])
            .unwrap();
        let err = store
            .log_batch(
                &run_id,
                &[metric("loss", 0.0, 99)],
                &[KeyValue::new("lr", "0.02")],
                &[],
            )
            .unwrap_err();
        assert!(
            matches!(&err, TrackingError::InvalidParameter(m) if m.contains("lr")),
            "{err}"
        );
        let (page, next) = store.metric_history(&run_id, "loss", 4, 0).unwrap();
        assert_eq!((page.len(), next), (4, Some(4)));
        let (all, _) = store.metric_history(&run_id, "loss", 100, 0).unwrap();
        assert_eq!(all.len(), 11, "the refused batch wrote nothing");

        store.delete_tag(&run_id, "team").unwrap();
        assert!(matches!(
            store.delete_tag(&run_id, "team"),
            Err(TrackingError::NotFound(_))
        ));
        let info = store
            .update_run(&run_id, Some("FINISHED"), Some(5_000), Some("renamed"))
            .unwrap();
        assert_eq!(
            (info.status.as_str(), info.end_time, info.run_name.as_str()),
            ("FINISHED", Some(5_000), "renamed")
        );
        assert!(store.update_run(&run_id, Some("DONE"), None, None).is_err());

        store.set_run_lifecycle(&run_id, true).unwrap();
        assert!(matches!(
            store.log_batch(&run_id, &[metric("loss", 0.0, 100)], &[], &[]),
            Err(TrackingError::InvalidParameter(_))
        ));
        assert!(matches!(
            store.get_run("missing"),
            Err(TrackingError::NotFound(_))
        ));
    });
}

#[test]
fn batches_over_mlflows_limits_or_with_bad_keys_are_refused() {
    each_store("t_limits", |store| {
        let run_id = new_run(store, "0").info.run_id;
        let too_many: Vec<Metric> = (0..1001).map(|s| metric("m", 0.0, s)).collect();
        assert!(matches!(
            store.log_batch(&run_id, &too_many, &[], &[]),
            Err(TrackingError::InvalidParameter(_))
        ));
        for key in ["", "../up", "/abs", "a;b"] {
            assert!(
                store
                    .log_batch(&run_id, &[metric(key, 0.0, 0)], &[], &[])
                    .is_err(),
                "{key:?}"
            );
        }
        let long = KeyValue::new("p", "x".repeat(6001));
        assert!(store.log_batch(&run_id, &[], &[long], &[]).is_err());
    });
}

#[test]
fn search_filters_orders_and_pages() {
    each_store("t_search", |store| {
        let id = store.create_experiment("search", None, &[]).unwrap();
        for i in 0..6 {
            let run_id = new_run(store, &id).info.run_id;
            store
                .log_batch(
                    &run_id,
                    &[metric("acc", i as f64 / 10.0, 0)],
                    &[KeyValue::new("depth", (i % 2).to_string())],
                    &[KeyValue::new("kind", if i < 3 { "small" } else { "large" })],
                )
                .unwrap();
        }
        let no_metric = new_run(store, &id).info.run_id;
        let search = |filter: &str, order: &[&str], max: usize, offset: usize| {
            let order: Vec<OrderBy> = order.iter().map(|o| OrderBy::parse(o).unwrap()).collect();
            store
                .search_runs(
                    std::slice::from_ref(&id),
                    &Filter::parse(filter).unwrap(),
                    ViewType::ActiveOnly,
                    &order,
                    max,
                    offset,
                )
                .unwrap()
        };
        let accs = |runs: &[Run]| -> Vec<f64> {
            runs.iter()
                .map(|r| r.data.metrics.first().map_or(-1.0, |m| m.value))
                .collect()
        };
        let (runs, _) = search(
            "metrics.acc >= 0.3 and params.depth = '1'",
            &["metrics.acc DESC"],
            10,
            0,
        );
        assert_eq!(accs(&runs), [0.5, 0.3]);
        let (runs, _) = search("tags.kind = 'small'", &["metrics.acc ASC"], 10, 0);
        assert_eq!(accs(&runs), [0.0, 0.1, 0.2]);
        // Runs without the metric sort last in either direction.
        let (runs, next) = search("", &["metrics.acc ASC"], 4, 0);
        assert_eq!((accs(&runs), next), (vec![0.0, 0.1, 0.2, 0.3], Some(4)));
        let (runs, next) = search("", &["metrics.acc ASC"], 4, 4);
        assert_eq!((accs(&runs), next), (vec![0.4, 0.5, -1.0], None));
        assert_eq!(runs[2].info.run_id, no_metric);
        let (runs, _) = search(&format!("attributes.run_id IN ('{no_metric}')"), &[], 10, 0);
        assert_eq!(runs.len(), 1);
        let (runs, _) = search(
            "attributes.status = 'RUNNING' and start_time > 0",
            &[],
            100,
            0,
        );
        assert_eq!(runs.len(), 7);
        store.set_run_lifecycle(&no_metric, true).unwrap();
        assert_eq!(search("", &[], 100, 0).0.len(), 6);
        assert!(store
            .search_runs(
                std::slice::from_ref(&id),
                &Filter::parse("metrics.acc = 'x'").unwrap(),
                ViewType::All,
                &[],
                10,
                0
            )
            .is_err());
        assert!(store
            .search_runs(
                &[id],
                &Filter::parse("attributes.color = 'x'").unwrap(),
                ViewType::All,
                &[],
                10,
                0
            )
            .is_err());
    });
}

#[test]
fn logged_models_belong_to_runs_and_are_found_by_name() {
    each_store("t_models", |store| {
        let run_id = new_run(store, "0").info.run_id;
        let model = store
            .create_logged_model(
                "0",
                "model",
                &run_id,
                "sklearn",
                &[KeyValue::new("k", "v")],
                &[],
            )
            .unwrap();
        let model_id = model.info.model_id.clone();
        assert!(model_id.starts_with("m-"));
        assert_eq!(model.info.status, "LOGGED_MODEL_PENDING");
        assert_eq!(
            model.info.artifact_uri,
            format!("mlflow-artifacts:/0/models/{model_id}/artifacts")
        );
        store
            .log_outputs(
                &run_id,
                &[ModelOutput {
                    model_id: model_id.clone(),
                    step: 0,
                }],
            )
            .unwrap();
        assert_eq!(
            store.get_run(&run_id).unwrap().outputs.model_outputs[0].model_id,
            model_id
        );
        let ready = store
            .finalize_logged_model(&model_id, "LOGGED_MODEL_READY")
            .unwrap();
        assert_eq!(ready.info.status, "LOGGED_MODEL_READY");
        assert!(store.finalize_logged_model(&model_id, "DONE").is_err());
        let (found, _) = store
            .search_logged_models(
                &["0".into()],
                &Filter::parse("name = 'model'").unwrap(),
                &[],
                10,
                0,
            )
            .unwrap();
        assert_eq!(found[0].info.model_id, model_id);
        assert!(matches!(
            store.get_logged_model("m-none"),
            Err(TrackingError::NotFound(_))
        ));
    });
}
