//! Two registry replicas (two `Store`s, each with its own connection pool) on one PostgreSQL
//! database, many threads registering versions of one model, approving them and moving aliases
//! at once: numbering has no gaps or duplicates, each change has exactly its audit entry,
//! approvals count, and every alias move saw the one before it (no lost update). Also: a
//! race to create the same model ends in one success and MLflow's RESOURCE_ALREADY_EXISTS,
//! never an internal error. PostgreSQL from WEIR_TEST_POSTGRES_URL (skipped without it unless
//! WEIR_REQUIRE_POSTGRES=1).

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Barrier};

use weir_registry::store::{Decision, NewVersion};
use weir_registry::{Store, StoreError};
use weir_sql::{Database, Options};

const MODELS: [&str; 2] = ["iris", "wine"];
const THREADS: usize = 8;
const VERSIONS_EACH: usize = 5;

/// Two replicas on one fresh database, opened at the same time (their migrations race too).
struct Replicas {
    stores: [Arc<Store>; 2],
    databases: Vec<Arc<Database>>,
    _db: weir_sql::testing::TestDatabase,
}

impl Replicas {
    /// Units of work the replicas ran again after a conflict, for the log.
    fn retries(&self) -> u64 {
        self.databases.iter().map(|db| db.retries()).sum()
    }
}

fn replicas(tag: &str) -> Option<Replicas> {
    let test_db = weir_sql::testing::postgres(tag)?;
    let start = Barrier::new(2);
    let opened: Vec<(Arc<Store>, Arc<Database>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let db = Arc::new(
                        Database::open_with(&test_db.url, Options { pool_size: 4 }).unwrap(),
                    );
                    (Arc::new(Store::new(db.clone()).unwrap()), db)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (stores, databases): (Vec<_>, Vec<_>) = opened.into_iter().unzip();
    Some(Replicas {
        stores: stores.try_into().ok().unwrap(),
        databases,
        _db: test_db,
    })
}

#[test]
fn replicas_number_approve_and_alias_versions_consistently() {
    let Some(replicas) = replicas("replicas_versions") else {
        return;
    };
    let stores = replicas.stores.clone();
    for model in MODELS {
        stores[0]
            .create_registered_model("admin", model, "", &[])
            .unwrap();
        stores[1].set_required_approvals("admin", model, 2).unwrap();
    }

    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stores, start) = (stores.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                // Half the threads on each model: changes of one model queue, changes of
                // different models run at once and may conflict (and be retried).
                let model = MODELS[t % MODELS.len()];
                let creator = format!("creator-{t}");
                let mut mine = Vec::new();
                for i in 0..VERSIONS_EACH {
                    // Alternate replicas, as clients behind a load balancer would.
                    let here = &stores[(t + i) % 2];
                    let there = &stores[(t + i + 1) % 2];
                    let version = here
                        .create_model_version(
                            &creator,
                            model,
                            &NewVersion {
                                source: format!("mlflow-artifacts:/{t}/{i}"),
                                ..NewVersion::default()
                            },
                        )
                        .unwrap()
                        .version;
                    // Not yet approved: the protected alias is refused.
                    let refused = there.set_alias(&creator, model, "champion", &version);
                    assert!(
                        matches!(refused, Err(StoreError::PermissionDenied(_))),
                        "{refused:?}"
                    );
                    let first = there
                        .decide("reviewer-1", model, &version, Decision::Approve, "ok")
                        .unwrap();
                    assert!(!first.approved, "one of two approvals");
                    let second = here
                        .decide("reviewer-2", model, &version, Decision::Approve, "ok")
                        .unwrap();
                    assert!(second.approved, "{second:?}");
                    there
                        .set_alias(&creator, model, "champion", &version)
                        .unwrap();
                    here.set_alias(&creator, model, "candidate", &version)
                        .unwrap();
                    mine.push(version.parse::<i64>().unwrap());
                }
                (model, mine)
            })
        })
        .collect();
    let mut created: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for thread in threads {
        let (model, versions) = thread.join().unwrap();
        created.entry(model).or_default().extend(versions);
    }
    let per_model = THREADS / MODELS.len() * VERSIONS_EACH;
    for model in MODELS {
        let mut numbers = created[model].clone();
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (1..=per_model as i64).collect::<Vec<_>>(),
            "{model}: each registration got its own number, without gaps"
        );
        check_model(&stores, model, per_model);
    }
    eprintln!(
        "{} changes, {} retried after a conflict",
        2 * MODELS.len() + THREADS * VERSIONS_EACH * 5,
        replicas.retries()
    );
}

/// What either replica reads back of `model` agrees with what the threads did to it.
fn check_model(stores: &[Arc<Store>; 2], model: &str, total: usize) {
    let store = &stores[1];
    let filter = weir_registry::filter::Filter::parse(&format!("name = '{model}'")).unwrap();
    let (versions, _) = store.search_model_versions(&filter, 1000, 0).unwrap();
    let stored: BTreeSet<i64> = versions
        .iter()
        .map(|v| v.version.parse().unwrap())
        .collect();
    assert_eq!(stored, (1..=total as i64).collect(), "{model}");

    // Every version has exactly its audit entries: one registration, two approvals, and
    // one move of each alias to it.
    let audit = store.audit(Some(model), None, None, 10_000).unwrap();
    let mut per_version: BTreeMap<String, HashMap<String, usize>> = BTreeMap::new();
    for entry in &audit {
        *per_version
            .entry(entry.version.clone())
            .or_default()
            .entry(entry.action.clone())
            .or_default() += 1;
    }
    let expected: HashMap<String, usize> = [
        ("create_model_version", 1),
        ("approve", 2),
        ("set_alias", 2),
    ]
    .into_iter()
    .map(|(a, n)| (a.to_owned(), n))
    .collect();
    for version in 1..=total {
        let actions = &per_version[&version.to_string()];
        assert_eq!(actions, &expected, "{model} version {version}");
        let status = store.approval_status(model, &version.to_string()).unwrap();
        assert!(status.approved, "{status:?}");
        assert_eq!(status.approved_by, ["reviewer-1", "reviewer-2"]);
    }
    assert_eq!(
        audit.len(),
        2 + total * 5,
        "{model}: nothing else was logged"
    );

    // Each alias's moves form one chain: every move saw the move before it. Two moves that
    // read the same old value (a lost update) would break the chain.
    for alias in ["champion", "candidate"] {
        let moves: Vec<(String, String)> = audit
            .iter()
            .filter(|e| e.action == "set_alias" && e.after.starts_with(&format!("{alias}=")))
            .map(|e| (e.before.clone(), e.after.clone()))
            .collect();
        assert_eq!(moves.len(), total, "{model} {alias}");
        let by_before: HashMap<&str, &str> = moves
            .iter()
            .map(|(before, after)| (before.as_str(), after.as_str()))
            .collect();
        assert_eq!(
            by_before.len(),
            total,
            "{model} {alias}: two moves saw the same value"
        );
        let mut current = format!("{alias}=");
        for _ in 0..total {
            current = by_before[current.as_str()].to_owned();
        }
        for store in stores {
            let now = store.get_version_by_alias(model, alias).unwrap().version;
            assert_eq!(current, format!("{alias}={now}"), "{model} {alias}");
        }
    }
    let registered = stores[0].get_registered_model(model).unwrap();
    assert_eq!(registered.aliases.len(), 2, "{:?}", registered.aliases);
}

#[test]
fn racing_to_create_one_model_gives_one_success_and_already_exists() {
    let Some(replicas) = replicas("replicas_create_race") else {
        return;
    };
    let stores = replicas.stores.clone();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stores, start) = (stores.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                stores[t % 2].create_registered_model(&format!("user-{t}"), "race", "", &[])
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 1, "{results:?}");
    for result in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(result, Err(StoreError::AlreadyExists(m)) if m.contains("race")),
            "{result:?}"
        );
    }
    let entries = stores[1]
        .audit(Some("race"), Some("create_registered_model"), None, 100)
        .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    // Versions of a model created concurrently with its deletion: each either lands (and is
    // then deleted with the model) or is told the model is gone — never an internal error.
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stores, start) = (stores.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                if t == 0 {
                    stores[0]
                        .delete_registered_model("admin", "race")
                        .map(|_| ())
                } else {
                    stores[t % 2]
                        .create_model_version("user", "race", &NewVersion::default())
                        .map(|_| ())
                }
            })
        })
        .collect();
    for thread in threads {
        let result = thread.join().unwrap();
        assert!(
            matches!(result, Ok(()) | Err(StoreError::NotFound(_))),
            "{result:?}"
        );
    }
    assert!(matches!(
        stores[1].get_registered_model("race"),
        Err(StoreError::NotFound(_))
    ));
    eprintln!("{} retried after a conflict", replicas.retries());
}
