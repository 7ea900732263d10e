//! The store on real SQLite databases: files in a temporary directory, and in-memory ones.

use super::*;
use crate::error::{ApiError, ApiResult};
use crate::model::{Attributes, KeyVersion};
use byok_core::KeyOp;
use byok_core::b64;
use byok_core::target::{Curve, KeyKind, KeyType, Kty, TargetKey};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// A version as before `public` existed (saving it derives its public members).
fn version(id: &str) -> KeyVersion {
    let key = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    KeyVersion {
        version: id.into(),
        kty: KeyType {
            kty: Kty::Ec,
            hsm: false,
        },
        bits: 256,
        crv: Some("P-256".into()),
        key_ops: vec![KeyOp::Sign, KeyOp::Verify],
        material: b64::encode(key.plaintext()),
        attributes: Attributes {
            enabled: true,
            nbf: None,
            exp: None,
            created: 1,
            updated: 1,
            exportable: None,
        },
        tags: Default::default(),
        release_policy: None,
        imported_byok: false,
        public: None,
    }
}

fn entry(name: &str, v: KeyVersion) -> KeyEntry {
    KeyEntry {
        name: name.into(),
        versions: vec![v],
        deleted: None,
        pending: None,
    }
}

/// A job for [`writer::commit_group`] that puts `e` in its slot, or fails with a 409 when
/// `e` is None; its outcome goes to `tx`.
fn job(
    name: &str,
    e: Option<KeyEntry>,
    tx: std::sync::mpsc::Sender<(String, ApiResult<()>)>,
) -> Job {
    let name_lc = name.to_ascii_lowercase();
    let label = name.to_string();
    let work: Work = Box::new(move |slot| match e {
        Some(e) => {
            *slot = Some(e);
            (
                true,
                Box::new(move |saved: Result<(), DbError>| {
                    tx.send((label, saved.map_err(ApiError::from))).unwrap()
                }),
            )
        }
        None => {
            let err = ApiError::conflict("refused");
            (
                false,
                Box::new(move |_| tx.send((label, Err(err))).unwrap()),
            )
        }
    });
    Job { name_lc, work }
}

#[test]
fn a_failing_job_is_rolled_back_alone_and_the_group_commits() {
    let location = Location::memory().unwrap();
    let conn = location.open_writer().unwrap();
    prepare(&conn, None, &location.path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let group = vec![
        job("a", Some(entry("a", version("v1"))), tx.clone()),
        job("b", None, tx.clone()),
        job("c", Some(entry("c", version("v2"))), tx.clone()),
    ];
    writer::commit_group(&conn, group, &Pendings::default());
    let answers: HashMap<_, _> = rx.try_iter().collect();
    assert!(answers["a"].is_ok() && answers["c"].is_ok());
    assert_eq!(answers["b"].as_ref().unwrap_err().status, 409);
    let reader = location.open_reader().unwrap();
    assert!(db::load_entry(&reader, "a").unwrap().is_some());
    assert!(db::load_entry(&reader, "b").unwrap().is_none());
    assert_eq!(
        db::load_entry(&reader, "c").unwrap().unwrap().versions[0].version,
        "v2"
    );
}

/// A job that, after an earlier job of its group saved `a`, reads `a` through a reader
/// connection: before the commit it must not be there.
#[test]
fn readers_never_see_a_change_before_its_commit() {
    for persist in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let location = match persist {
            true => Location::file(dir.path().join(DB_FILE)),
            false => Location::memory().unwrap(),
        };
        let conn = location.open_writer().unwrap();
        prepare(&conn, None, &location.path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let seen = Arc::new(Mutex::new(None));
        let (peek, at) = (location.clone(), seen.clone());
        let spy: Work = Box::new(move |_| {
            let reader = peek.open_reader().unwrap();
            *at.lock().unwrap() = Some(db::load_entry(&reader, "a").unwrap().is_some());
            (true, Box::new(|_| {}))
        });
        let group = vec![
            job("a", Some(entry("a", version("v1"))), tx),
            Job {
                name_lc: "spy".into(),
                work: spy,
            },
        ];
        writer::commit_group(&conn, group, &Pendings::default());
        assert!(rx.recv().unwrap().1.is_ok());
        assert_eq!(*seen.lock().unwrap(), Some(false), "persist {persist}");
        let reader = location.open_reader().unwrap();
        assert!(db::load_entry(&reader, "a").unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_memory_store_serves_concurrent_readers_and_writers() {
    let store = Arc::new(Store::open(None).unwrap());
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (writer, reader) = (store.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            let store = writer;
            for i in 0..50 {
                let name = format!("K{w}-{i}");
                let mut v = version(&format!("{w}x{i}"));
                v.fill_public().unwrap();
                let e = entry(&name, v);
                store
                    .modify(&name, move |slot| {
                        *slot = Some(e);
                        Ok::<_, DbError>(())
                    })
                    .await
                    .unwrap();
                // Acknowledged: visible to every reader from now on.
                assert!(store.entry(&name).await.unwrap().is_some());
            }
        }));
        tasks.push(tokio::spawn(async move {
            let store = reader;
            for _ in 0..200 {
                let (page, _) = store.page(false, 0, 25, |_| true).await.unwrap();
                assert!(page.len() <= 25);
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (mut all, mut skip) = (Vec::new(), 0);
    loop {
        let (page, more) = store.page(false, skip, 25, |_| true).await.unwrap();
        skip += page.len();
        all.extend(page.into_iter().map(|e| e.name));
        if !more {
            break;
        }
    }
    assert_eq!(all.len(), 200);
    assert!(
        all.windows(2)
            .all(|w| w[0].to_lowercase() < w[1].to_lowercase())
    );
    // Another in-memory store is another database.
    assert!(
        Store::open(None)
            .unwrap()
            .entry("k0-0")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_change_that_fails_changes_nothing_and_a_key_can_be_removed() {
    let store = Store::open(None).unwrap();
    let e = entry("Kek", version("v1"));
    store
        .modify("kek", move |slot| {
            *slot = Some(e);
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
    let refused: ApiResult<()> = store
        .modify("KEK", |slot| {
            slot.as_mut().unwrap().versions.push(version("v2"));
            Err(ApiError::conflict("no"))
        })
        .await;
    assert_eq!(refused.unwrap_err().status, 409);
    let kept = store.entry("KEK").await.unwrap().unwrap();
    assert_eq!((kept.name.as_str(), kept.versions.len()), ("Kek", 1));
    // The public members were derived when the version was saved without them.
    assert!(kept.versions[0].public.is_some());
    store
        .modify("kek", |slot| {
            *slot = None;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
    assert!(store.entry("kek").await.unwrap().is_none());
}

/// `state.json` as kv-emulator wrote it before the database: the old `State` serialized,
/// versions without `public`.
#[test]
fn state_json_is_imported_once_and_kept_as_imported() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b1, b2) = (version("a1"), version("b1"), version("b2"));
    let mut deleted = entry("B", b1.clone());
    deleted.versions.push(b2.clone());
    deleted.deleted = Some(crate::model::Deleted {
        deleted_date: 5,
        scheduled_purge_date: 6,
    });
    let old = json!({"keys": {"a": entry("a", a.clone()), "b": deleted}});
    let text = old.to_string();
    assert!(!text.contains("\"public\""));
    std::fs::write(dir.path().join(STATE_FILE), &text).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for _ in 0..2 {
        let store = Store::open(Some(dir.path())).unwrap();
        let got_a = rt.block_on(store.entry("A")).unwrap().unwrap();
        assert_eq!(got_a.versions[0].material, a.material);
        let got_b = rt.block_on(store.entry("b")).unwrap().unwrap();
        assert_eq!(got_b.name, "B");
        let ids: Vec<_> = got_b.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(ids, ["b1", "b2"]);
        assert_eq!(got_b.deleted.unwrap().scheduled_purge_date, 6);
        assert_eq!(got_b.versions[1].public, b2.derive_public().unwrap());
        store.close();
        // Imported once: the file is kept under its new name, unchanged.
        assert!(!dir.path().join(STATE_FILE).exists());
        let kept = std::fs::read_to_string(dir.path().join(IMPORTED)).unwrap();
        assert_eq!(kept, text);
    }
    assert!(holds_keys(dir.path()));
}

const IMPORTED: &str = crate::state_dir::IMPORTED_STATE_FILE;

#[test]
fn a_database_of_a_newer_schema_or_of_another_program_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    Store::open(Some(dir.path())).unwrap().close();
    assert!(!holds_keys(dir.path()), "an empty database pins no URL");
    let conn = Connection::open(&path).unwrap();
    db::set_meta(&conn, "schema_version", "99").unwrap();
    drop(conn);
    let err = Store::open(Some(dir.path())).err().unwrap();
    assert!(matches!(err, StoreError::Newer { found: 99, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("run the kv-emulator version that wrote it"),
        "{text}"
    );

    for other in [0, 1] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        match other {
            0 => std::fs::write(&path, b"not a database at all, but long enough to look").unwrap(),
            _ => Connection::open(&path)
                .unwrap()
                .execute_batch("CREATE TABLE t (x)")
                .unwrap(),
        }
        let err = Store::open(Some(dir.path())).err().unwrap();
        assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("is not a kv-emulator key database"), "{text}");
        assert!(text.contains("move it away"), "{text}");
    }
}

#[test]
fn a_state_directory_is_served_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(Some(dir.path())).unwrap();
    let err = Store::open(Some(dir.path())).err().unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("stop that emulator first"),
        "{err}"
    );
    first.close();
    Store::open(Some(dir.path())).unwrap();
}

#[test]
fn an_in_memory_database_left_by_a_killed_emulator_is_removed() {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let location = Location::memory().unwrap();
    let parent = location
        .path
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let orphan = parent.join(format!("kv-emulator-{pid}-test"));
    std::fs::create_dir_all(&orphan).unwrap();
    let ours = location.path.parent().unwrap().to_path_buf();
    let next = Location::memory().unwrap();
    assert!(!orphan.exists(), "{} left behind", orphan.display());
    assert!(ours.exists(), "a live emulator's database was removed");
    drop((location, next));
    assert!(!ours.exists(), "a closed store's database was kept");
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // One that existed world-readable is narrowed too.
    std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
    std::fs::set_permissions(
        dir.path().join(DB_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let store = Store::open(Some(dir.path())).unwrap();
    let e = entry("k", version("v1"));
    store
        .modify("k", move |slot| {
            *slot = Some(e);
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
    for file in [DB_FILE, "state.db-wal", "state.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}
