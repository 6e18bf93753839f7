//! EN-2: provider keys under envelope encryption. No key in clear in the database; a
//! ciphertext moved to another record or org does not open; key-encryption-key rotation
//! re-wraps online, and afterwards the old key can be retired.

use portcullis_core::crypto::Keyring;
use portcullis_core::mfa::Totp;
use portcullis_storage::{StorageError, auth, credentials};
use portcullis_testkit::TestDb;
use sqlx::Connection;
use uuid::Uuid;

use crate::fixtures::{PROVIDER_KEY, add_member, keyring, populated_org};

async fn credential_of(test: &TestDb, org: portcullis_core::OrgId) -> Uuid {
    let mut tx = test.db.begin_tenant(org).await.unwrap();
    let id = credentials::list(&mut tx).await.unwrap()[0].credential_id;
    tx.commit().await.unwrap();
    id
}

async fn reveal(
    test: &TestDb,
    ring: &Keyring,
    org: portcullis_core::OrgId,
    id: Uuid,
) -> Result<String, StorageError> {
    let mut tx = test.db.begin_tenant(org).await.unwrap();
    credentials::reveal(&mut tx, ring, id).await
}

#[tokio::test]
async fn en_2_the_database_holds_no_provider_key_in_clear() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "org-a").await.org_id;
    let id = credential_of(&test, org).await;
    assert_eq!(
        reveal(&test, &keyring(), org, id).await.unwrap(),
        PROVIDER_KEY
    );
    let dump = test.dump().await.unwrap();
    assert!(!dump.contains(PROVIDER_KEY) && !dump.contains(&PROVIDER_KEY[3..20]));
    let hex_key = PROVIDER_KEY
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    assert!(
        !dump.contains(&hex_key[..24]),
        "the key is in the dump as bytes"
    );
}

#[tokio::test]
async fn en_2_a_ciphertext_moved_to_another_record_or_org_does_not_open() {
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "org-a").await.org_id;
    let b = populated_org(&test, "org-b").await.org_id;
    let (a_id, b_id) = (credential_of(&test, a).await, credential_of(&test, b).await);
    let mut dba = sqlx::PgConnection::connect(test.admin_url()).await.unwrap();
    sqlx::query(
        "update provider_credentials set ciphertext = (select ciphertext from provider_credentials where credential_id = $1)
         where credential_id = $2",
    )
    .bind(a_id)
    .bind(b_id)
    .execute(&mut dba)
    .await
    .unwrap();
    assert!(matches!(
        reveal(&test, &keyring(), b, b_id).await,
        Err(StorageError::Crypto(_))
    ));
    // Even with B's own data key swapped for A's, the binding to org and record holds.
    sqlx::query(
        "update org_data_keys set wrapped_key = (select wrapped_key from org_data_keys where org_id = $1)
         where org_id = $2",
    )
    .bind(a.as_uuid())
    .bind(b.as_uuid())
    .execute(&mut dba)
    .await
    .unwrap();
    assert!(matches!(
        reveal(&test, &keyring(), b, b_id).await,
        Err(StorageError::Crypto(_))
    ));
    assert_eq!(
        reveal(&test, &keyring(), a, a_id).await.unwrap(),
        PROVIDER_KEY
    );
}

/// Within one org both credentials share the data key: only the binding of each ciphertext to
/// its own record keeps one credential's key from opening as another's.
#[tokio::test]
async fn en_2_a_ciphertext_moved_to_another_credential_of_the_same_org_does_not_open() {
    use portcullis_core::audit::{Actor, Source};
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "org-a").await.org_id;
    let first = credential_of(&test, a).await;
    let second = Uuid::now_v7();
    let mut tx = test
        .db
        .begin_write(
            a,
            &Actor::system("en-2"),
            &Source::default(),
            portcullis_storage::AuditedChange::new("credential.added", "credential", second),
        )
        .await
        .unwrap();
    let other = credentials::NewCredential {
        name: "second",
        provider: portcullis_core::provider::ProviderKind::Mock,
        base_url: None,
        api_key: "sk-second-credential-0123456789",
    };
    credentials::create(&mut tx, &keyring(), second, &other)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut dba = sqlx::PgConnection::connect(test.admin_url()).await.unwrap();
    let same_key: bool = sqlx::query_scalar(
        "select count(distinct dek_id) = 1 from provider_credentials where credential_id in ($1, $2)",
    )
    .bind(first)
    .bind(second)
    .fetch_one(&mut dba)
    .await
    .unwrap();
    assert!(same_key, "the two credentials share their org's data key");
    sqlx::query(
        "update provider_credentials set ciphertext = (select ciphertext from provider_credentials where credential_id = $1)
         where credential_id = $2",
    )
    .bind(first)
    .bind(second)
    .execute(&mut dba)
    .await
    .unwrap();
    assert!(matches!(
        reveal(&test, &keyring(), a, second).await,
        Err(StorageError::Crypto(_))
    ));
    assert_eq!(
        reveal(&test, &keyring(), a, first).await.unwrap(),
        PROVIDER_KEY
    );
}

#[tokio::test]
async fn en_2_kek_rotation_rewraps_online_and_the_old_key_retires() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "org-a").await.org_id;
    let id = credential_of(&test, org).await;
    // A TOTP seed sealed under the old key too.
    let user = add_member(&test.runtime, org, "mfa@example.com").await;
    let seed = Totp::generate_secret().unwrap();
    let sealed = keyring()
        .seal(&seed, format!("totp:{user}").as_bytes())
        .unwrap();
    let mut tx = test
        .db
        .begin_person(
            user,
            &portcullis_core::audit::Source::default(),
            "mfa.enrollment_started",
        )
        .await
        .unwrap();
    auth::set_totp_pending(&mut tx, &sealed).await.unwrap();
    tx.commit().await.unwrap();

    let new_key = vec![9u8; 32];
    let both = Keyring::new(2, vec![(1, vec![7; 32]), (2, new_key.clone())]).unwrap();
    let retired = Keyring::new(2, vec![(2, new_key)]).unwrap();
    assert!(
        reveal(&test, &retired, org, id).await.is_err(),
        "the new key alone cannot open yet"
    );

    assert_eq!(
        credentials::rewrap_data_keys(&test.db, &both)
            .await
            .unwrap(),
        1
    );
    assert_eq!(auth::reseal_totp_seeds(&test.db, &both).await.unwrap(), 1);
    // Served all along with both keys; afterwards the old one can go.
    assert_eq!(reveal(&test, &both, org, id).await.unwrap(), PROVIDER_KEY);
    assert_eq!(
        reveal(&test, &retired, org, id).await.unwrap(),
        PROVIDER_KEY
    );
    let profile = auth::profile(&test.db, user).await.unwrap().unwrap();
    let reopened = retired
        .open(
            &profile.totp_pending_ciphertext.unwrap(),
            format!("totp:{user}").as_bytes(),
        )
        .unwrap();
    assert_eq!(reopened, seed);
    // A second run finds nothing left to do, and the rotation is in the audit trail.
    assert_eq!(
        credentials::rewrap_data_keys(&test.db, &both)
            .await
            .unwrap(),
        0
    );
    assert_eq!(auth::reseal_totp_seeds(&test.db, &both).await.unwrap(), 0);
    let mut tx = test.db.begin_tenant(org).await.unwrap();
    let filter = portcullis_storage::audit::EventFilter {
        limit: 100,
        action: Some("kek.rotated".into()),
        ..Default::default()
    };
    assert_eq!(
        portcullis_storage::audit::list(&mut tx, &filter)
            .await
            .unwrap()
            .len(),
        1
    );
}
