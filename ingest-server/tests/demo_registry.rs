//! The registry's demo mode (for `make demo` only): an unknown plate gets a
//! made-up registration owned by one of the fictitious `demo-` owners,
//! marked as such, always the same owner for the same plate; nothing is
//! invented when the mode is off or there are no demo owners.

use ingest_server::app;
use ingest_server::config::Config;
use ingest_server::registry::{self, FICTITIOUS, Purpose};

fn purpose() -> Purpose {
    Purpose {
        actor: "test".into(),
        reason: "demo registry test".into(),
        event_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_invents_marked_registrations_for_unknown_plates() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo-registry");
    for mode in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        cfg.registry.demo_mode = mode;
        let i = app::open(&cfg).await.unwrap();
        let ctx = i.context().clone();
        let reg = ctx.registry.clone().unwrap();
        // No demo owners yet: nothing to hand out.
        assert!(
            reg.lookup("51F12345", Some("white"), &purpose())
                .await
                .unwrap()
                .is_none()
        );
        registry::import(
            &ctx.db,
            ctx.grammar,
            &demo.join("vehicles.csv"),
            &demo.join("owners.csv"),
        )
        .await
        .unwrap();
        let found = reg
            .lookup("51F12345", Some("white"), &purpose())
            .await
            .unwrap();
        if !mode {
            assert!(found.is_none(), "off by default: nothing invented");
            continue;
        }
        let r = found.expect("invented in demo mode");
        assert!(r.owner.owner_id.starts_with("demo-"));
        assert!(r.owner.full_name.contains("DỮ LIỆU THỬ"));
        assert_eq!(r.vehicle.registration_status, FICTITIOUS);
        let again = reg
            .lookup("51F12345", Some("white"), &purpose())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again.owner.owner_id, r.owner.owner_id,
            "same plate, same owner"
        );
        // Registered plates are answered from the registry as they are.
        let known = reg
            .lookup("30A00001", Some("white"), &purpose())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                known.owner.owner_id.as_str(),
                known.vehicle.registration_status.as_str()
            ),
            ("demo-o1", "active")
        );
    }
}
