use crate::store::tests::each_store;
use crate::store::*;

#[test]
fn approvals_need_other_people_and_protect_aliases() {
    each_store("approvals", |store, _| {
        store
            .create_registered_model("alice", "iris", "", &[])
            .unwrap();
        store
            .create_model_version("alice", "iris", &NewVersion::default())
            .unwrap();
        assert_eq!(
            store.get_model_version("iris", "1").unwrap().user_id,
            "alice"
        );
        // Unapproved: protected aliases refuse it, naming what is missing; others are fine.
        let refused = store
            .set_alias("alice", "iris", "production", "1")
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::PermissionDenied(m) if m.contains("0 of 1 required approvals")),
            "{refused}"
        );
        store.set_alias("alice", "iris", "candidate", "1").unwrap();
        // The creator cannot approve her own version.
        assert!(matches!(
            store.decide("alice", "iris", "1", Decision::Approve, "lgtm"),
            Err(StoreError::PermissionDenied(_))
        ));
        store
            .decide("alice", "iris", "1", Decision::Request, "please")
            .unwrap();
        // A quorum of two, then one approval is not enough.
        store.set_required_approvals("alice", "iris", 2).unwrap();
        let status = store
            .decide("bob", "iris", "1", Decision::Approve, "ok")
            .unwrap();
        assert!(!status.approved);
        assert_eq!(
            (status.approved_by.clone(), status.requested_by.clone()),
            (vec!["bob".to_owned()], vec!["alice".to_owned()])
        );
        let denied = store
            .set_alias("bob", "iris", "champion", "1")
            .unwrap_err()
            .to_string();
        assert!(
            denied.contains("1 of 2 required approvals (approved by bob"),
            "{denied}"
        );
        // A rejection blocks even a full quorum, until the rejecter approves.
        store
            .decide("carol", "iris", "1", Decision::Reject, "bad metrics")
            .unwrap();
        let status = store
            .decide("dave", "iris", "1", Decision::Approve, "ok")
            .unwrap();
        assert!(!status.approved);
        assert!(store
            .set_alias("bob", "iris", "production", "1")
            .unwrap_err()
            .to_string()
            .contains("rejected by carol"));
        assert!(
            store
                .decide("carol", "iris", "1", Decision::Approve, "fixed")
                .unwrap()
                .approved
        );
        store.set_alias("bob", "iris", "production", "1").unwrap();
        assert!(matches!(
            store.set_required_approvals("alice", "iris", 0),
            Err(StoreError::InvalidParameter(_))
        ));
    });
}
