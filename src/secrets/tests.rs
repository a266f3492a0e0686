use std::sync::Arc;

use scaff_core::http::SecretValues;
use scaff_core::run::SystemClock;
use scaff_core::store::{MemoryStore, SealedSecret, SecretStore};

use super::*;

#[test]
fn sealed_values_open_with_the_same_key_and_name() {
    let key = MasterKey::generate();
    let sealed = seal(&key, "api_token", "s3cr3t-välue".as_bytes());
    assert_eq!(sealed.len(), NONCE_BYTES + "s3cr3t-välue".len() + TAG_BYTES);
    assert_eq!(
        open(&key, "api_token", &sealed).expect("opens"),
        "s3cr3t-välue"
    );
    assert_ne!(
        seal(&key, "api_token", b"same"),
        seal(&key, "api_token", b"same"),
        "every seal has a fresh nonce"
    );
}

#[test]
fn another_key_does_not_open() {
    let sealed = seal(&MasterKey::generate(), "x", b"value");
    let err = open(&MasterKey::generate(), "x", &sealed).expect_err("wrong key");
    assert!(matches!(err, SecretError::Undecryptable { ref name } if name == "x"));
}

#[test]
fn altered_or_truncated_ciphertext_does_not_open() {
    let key = MasterKey::generate();
    let sealed = seal(&key, "x", b"value");
    for i in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x01;
        assert!(open(&key, "x", &tampered).is_err(), "byte {i} flipped");
    }
    assert!(open(&key, "x", &sealed[..sealed.len() - 1]).is_err());
    assert!(open(&key, "x", &sealed[..NONCE_BYTES]).is_err());
    assert!(open(&key, "x", &[]).is_err());
}

#[test]
fn a_ciphertext_moved_to_another_name_does_not_open() {
    let key = MasterKey::generate();
    let sealed = seal(&key, "first", b"value");
    assert!(open(&key, "second", &sealed).is_err());
}

#[test]
fn key_ids_are_sixteen_hex_digits_of_the_sha256() {
    let key = MasterKey::from_bytes([7; KEY_BYTES]);
    let digest = Sha256::digest([7u8; KEY_BYTES]);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(key.key_id(), &hex[..16]);
    assert_ne!(MasterKey::generate().key_id(), key.key_id());
}

#[test]
fn keys_parse_from_base64_of_32_bytes_only() {
    let key = MasterKey::generate();
    let again = MasterKey::from_base64(&format!("  {}\n", key.to_base64())).expect("parses");
    assert_eq!(again.key_id(), key.key_id());
    assert!(matches!(
        MasterKey::from_base64("not base64!"),
        Err(SecretError::BadKey(_))
    ));
    let short = STANDARD.encode([1u8; 16]);
    let err = MasterKey::from_base64(&short).expect_err("16 bytes");
    assert!(err.to_string().contains("16 bytes"), "{err}");
}

#[test]
fn debug_never_shows_key_material() {
    let key = MasterKey::from_bytes([0xab; KEY_BYTES]);
    let shown = format!("{key:?}");
    assert!(shown.contains(key.key_id()));
    assert!(!shown.contains(&key.to_base64()));
    assert!(!shown.to_lowercase().contains("abab"));
    assert!(!shown.contains("171"), "{shown}");
}

#[cfg(unix)]
#[test]
fn the_key_file_is_created_once_with_mode_0600_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scaff.key");
    let (first, created) = MasterKey::load_or_create(&path).expect("created");
    assert!(created);
    let mode = std::fs::metadata(&path)
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.trim(), first.to_base64());
    let (second, created) = MasterKey::load_or_create(&path).expect("reused");
    assert!(!created);
    assert_eq!(second.key_id(), first.key_id());
    assert!(matches!(
        first.write_new_file(&path),
        Err(SecretError::KeyFile { ref source, .. }) if source.kind() == io::ErrorKind::AlreadyExists
    ));
}

#[test]
fn a_malformed_key_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.key");
    std::fs::write(&path, "too short").expect("write");
    let err = MasterKey::load_or_create(&path).expect_err("malformed");
    assert!(err.to_string().contains("bad.key"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("kept"),
        "too short",
        "a bad key file is never overwritten"
    );
}

#[test]
fn names_and_values_are_checked_without_quoting_the_value() {
    assert!(check("api_token", "x").is_empty());
    assert!(check("_T1", "x").is_empty());
    let problems = check("bad-name", "");
    assert_eq!(
        problems.iter().map(|p| p.field).collect::<Vec<_>>(),
        ["name", "value"]
    );
    for bad in ["", "1abc", "a.b", "a b", &"x".repeat(65)] {
        assert!(check_name(bad).is_some(), "{bad:?}");
    }
    assert!(check_value(&"v".repeat(MAX_VALUE_BYTES)).is_none());
    let long = "secretpart".repeat(MAX_VALUE_BYTES / 10 + 1);
    let message = check_value(&long).expect("too long");
    assert!(!message.contains("secretpart"));
    let message = check_value("hunter2\0").expect("NUL");
    assert!(!message.contains("hunter2"));
}

fn service(store: Arc<MemoryStore>, key: MasterKey) -> SecretsService {
    SecretsService::new(store, key, Arc::new(SystemClock))
}

#[tokio::test]
async fn the_service_seals_what_it_stores_and_opens_it_for_steps() {
    let store = Arc::new(MemoryStore::new());
    let key = MasterKey::generate();
    let secrets = service(store.clone(), key.clone());
    let first = secrets.put("token", "hunter2").await.expect("put");
    assert!(first.created);
    let stored = store
        .get_secret("token")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.key_id, key.key_id());
    assert!(
        !stored
            .ciphertext
            .windows(b"hunter2".len())
            .any(|w| w == b"hunter2")
    );
    assert_eq!(secrets.values().await.expect("values")["token"], "hunter2");

    // A replacement is seen at once, although the values were cached.
    let second = secrets
        .put("token", "correct horse")
        .await
        .expect("replace");
    assert!(!second.created);
    assert_eq!(second.info.created_at, first.info.created_at);
    assert!(second.info.updated_at >= first.info.updated_at);
    assert_eq!(
        secrets.values().await.expect("values")["token"],
        "correct horse"
    );
    assert_eq!(
        secrets.list().await.expect("list"),
        vec![second.info.clone()]
    );
    assert!(secrets.delete("token").await.expect("delete"));
    assert!(!secrets.delete("token").await.expect("again"));
    assert!(secrets.values().await.expect("values").is_empty());
}

#[tokio::test]
async fn invalid_secrets_are_refused_before_anything_is_stored() {
    let store = Arc::new(MemoryStore::new());
    let secrets = service(store.clone(), MasterKey::generate());
    let err = secrets.put("no-dashes", "").await.expect_err("invalid");
    let SecretError::Invalid(problems) = err else {
        panic!("{err:?}")
    };
    assert_eq!(problems.len(), 2);
    assert!(store.all_secrets().await.expect("all").is_empty());
}

#[tokio::test]
async fn values_sealed_by_another_key_are_an_error_naming_the_secret() {
    let store = Arc::new(MemoryStore::new());
    service(store.clone(), MasterKey::generate())
        .put("old", "v")
        .await
        .expect("put");
    let err = service(store, MasterKey::generate())
        .values()
        .await
        .expect_err("other key");
    assert!(
        err.contains("`old`") && err.contains("sealed by key"),
        "{err}"
    );
}

#[tokio::test]
async fn the_service_debug_shows_no_values() {
    let secrets = service(Arc::new(MemoryStore::new()), MasterKey::generate());
    secrets.put("token", "hunter2").await.expect("put");
    secrets.values().await.expect("values");
    let shown = format!("{secrets:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("cached_secrets"),
        "{shown}"
    );
    assert_eq!(secrets.cached().expect("cached")["token"], "hunter2");
}

#[tokio::test]
async fn resealing_moves_every_secret_to_the_new_key_keeping_times() {
    let store = Arc::new(MemoryStore::new());
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let secrets = service(store.clone(), old.clone());
    secrets.put("a", "alpha").await.expect("put");
    secrets.put("b", "beta").await.expect("put");
    let before = store.all_secrets().await.expect("all");
    let rotation = reseal_all(store.as_ref(), &old, &new)
        .await
        .expect("rotates");
    assert_eq!(rotation.resealed, 2);
    let after = store.all_secrets().await.expect("all");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (&a.name, a.created_at, a.updated_at),
            (&b.name, b.created_at, b.updated_at)
        );
        assert_eq!(a.key_id, new.key_id());
    }
    let values = service(store.clone(), new.clone())
        .values()
        .await
        .expect("new key");
    assert_eq!(
        (values["a"].as_str(), values["b"].as_str()),
        ("alpha", "beta")
    );
    // A second pass finds them done.
    let again = reseal_all(store.as_ref(), &old, &new).await.expect("again");
    assert_eq!((again.resealed, again.already_new), (0, 2));
}

#[tokio::test]
async fn a_secret_of_an_unknown_key_stops_resealing_with_nothing_changed() {
    let store = Arc::new(MemoryStore::new());
    let old = MasterKey::generate();
    service(store.clone(), old.clone())
        .put("a", "alpha")
        .await
        .expect("put");
    let stranger = MasterKey::generate();
    store
        .put_secret(SealedSecret {
            name: "z".into(),
            ciphertext: seal(&stranger, "z", b"zeta"),
            key_id: stranger.key_id().into(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        })
        .await
        .expect("put");
    let before = store.all_secrets().await.expect("all");
    let err = reseal_all(store.as_ref(), &old, &MasterKey::generate())
        .await
        .expect_err("unknown key");
    assert!(
        matches!(&err, SecretError::UnknownKey { name, key_id, .. } if name == "z" && key_id == stranger.key_id()),
        "{err:?}"
    );
    assert_eq!(store.all_secrets().await.expect("all"), before);
}

#[tokio::test]
async fn rotating_the_key_file_keeps_the_old_key_beside_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("scaff.key");
    let new_file = with_suffix(&key_file, ".new");
    let (old, _) = MasterKey::load_or_create(&key_file).expect("key");
    let store = Arc::new(MemoryStore::new());
    service(store.clone(), old.clone())
        .put("a", "alpha")
        .await
        .expect("put");

    let report = rotate_key_file(store.as_ref(), &key_file, None, &new_file)
        .await
        .expect("rotates");
    assert_eq!(report.rotation.resealed, 1);
    assert!(
        !new_file.exists(),
        "the new key file was renamed over the key file"
    );
    let now = MasterKey::load_file(&key_file).expect("new key");
    assert_eq!(now.key_id(), report.new_key_id);
    let kept = MasterKey::load_file(&with_suffix(&key_file, ".old")).expect("old key");
    assert_eq!(kept.key_id(), old.key_id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [&key_file, &with_suffix(&key_file, ".old")] {
            let mode = std::fs::metadata(f).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        }
    }
    assert_eq!(
        service(store.clone(), now).values().await.expect("opens")["a"],
        "alpha"
    );
    assert!(service(store, old).values().await.is_err());
}

#[tokio::test]
async fn a_refused_rotation_leaves_the_files_as_they_were() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("scaff.key");
    let new_file = with_suffix(&key_file, ".new");
    let (old, _) = MasterKey::load_or_create(&key_file).expect("key");
    let store = Arc::new(MemoryStore::new());
    let stranger = MasterKey::generate();
    service(store.clone(), stranger)
        .put("z", "zeta")
        .await
        .expect("put");
    let err = rotate_key_file(store.as_ref(), &key_file, None, &new_file)
        .await
        .expect_err("unknown key");
    assert!(err.to_string().contains("`z`"), "{err}");
    assert!(!new_file.exists());
    assert!(!with_suffix(&key_file, ".old").exists());
    assert_eq!(
        MasterKey::load_file(&key_file).expect("key").key_id(),
        old.key_id()
    );
}

#[tokio::test]
async fn stored_values_are_redacted_at_once_and_stay_redacted() {
    let redactor = scaff_core::redact::SharedRedactor::default();
    let secrets = service(Arc::new(MemoryStore::new()), MasterKey::generate())
        .with_redactor(redactor.clone());
    secrets.put("token", "first-value-123").await.expect("put");
    assert_eq!(
        redactor.current().text("x first-value-123 y"),
        "x [REDACTED] y"
    );
    secrets
        .put("token", "second-value-456")
        .await
        .expect("replace");
    assert_eq!(
        redactor.current().text("first-value-123 second-value-456"),
        "[REDACTED] [REDACTED]",
        "a replaced value stays redacted"
    );
    assert!(secrets.delete("token").await.expect("delete"));
    assert_eq!(
        redactor.current().text("second-value-456"),
        "[REDACTED]",
        "a deleted value stays redacted (harmless)"
    );
}

#[tokio::test]
async fn values_opened_from_the_store_are_redacted() {
    // Stored by another node (another service over the same store).
    let store = Arc::new(MemoryStore::new());
    let key = MasterKey::generate();
    let elsewhere = scaff_core::redact::SharedRedactor::default();
    service(store.clone(), key.clone())
        .with_redactor(elsewhere)
        .put("api", "opened-value-789")
        .await
        .expect("put");
    let redactor = scaff_core::redact::SharedRedactor::default();
    let secrets = service(store, key).with_redactor(redactor.clone());
    assert_eq!(
        redactor.current().text("opened-value-789"),
        "opened-value-789"
    );
    secrets.values().await.expect("values");
    assert_eq!(redactor.current().text("opened-value-789"), "[REDACTED]");
}

#[tokio::test]
async fn the_service_teaches_the_global_redactor_by_default() {
    let secrets = service(Arc::new(MemoryStore::new()), MasterKey::generate());
    secrets
        .put("token", "global-secret-value-314")
        .await
        .expect("put");
    let global = scaff_core::redact::global();
    assert_eq!(
        global.current().text("v=global-secret-value-314"),
        "v=[REDACTED]"
    );
}
