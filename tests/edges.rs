//! Bad input at the edges (issue 25), through the binary: a stored secret whose ciphertext
//! does not decrypt is diagnosed as that (in `tern secrets list` and in the run's error), and a
//! flow file saved with a UTF-8 byte order mark loads like one without.

use serde_json::json;

use crate::serve::rt;
use crate::support::{Flows, fresh_data_dir, tern};

#[test]
fn a_stored_secret_that_does_not_decrypt_is_diagnosed_as_that_not_as_missing() {
    let data = fresh_data_dir();
    let set = tern()
        .env("TERN_DATA_DIR", &data)
        .env("VALUE", "stored-secret-value-1234")
        .args(["secrets", "set", "API_KEY", "--from-env", "VALUE"])
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    // A tampered row: one bit of the ciphertext flipped.
    rt().block_on(async {
        let url = format!("sqlite://{}", data.join("tern.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let mut blob: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = 'API_KEY'").fetch_one(&pool).await.unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        sqlx::query("UPDATE secrets SET value = ?1 WHERE name = 'API_KEY'").bind(blob).execute(&pool).await.unwrap();
        pool.close().await;
    });
    let list = tern().env("TERN_DATA_DIR", &data).args(["secrets", "list"]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&list.stdout), String::from_utf8_lossy(&list.stderr));
    assert!(list.status.success(), "{err}");
    assert_eq!(out.trim(), "API_KEY\t(does not decrypt)", "the row is marked");
    assert!(err.contains("`API_KEY` does not decrypt") && err.contains("tern secrets set API_KEY"), "{err}");

    let flows = Flows::new();
    let flow = flows.write(
        "uses-secret",
        &json!({"version": 1, "id": "uses-secret", "steps": [
            {"id": "say", "type": "send_message", "text": "key {{secrets.API_KEY}}"}]}),
    );
    let run = tern()
        .env("TERN_DATA_DIR", &data)
        .args(["run", flow.to_str().unwrap(), "--message", "hi", "--json"])
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let all = format!("{out}\n{err}");
    assert!(all.contains("the stored secret `API_KEY` does not decrypt"), "{all}");
    assert!(all.contains("TERN_MASTER_KEY") && all.contains("tern secrets set API_KEY"), "what to do: {all}");
    assert!(!all.contains("no secret `API_KEY`"), "the wrong diagnosis: {all}");
    assert!(!all.contains("stored-secret-value-1234"), "{all}");
}

#[test]
fn a_flow_file_with_a_byte_order_mark_validates_and_runs() {
    let flows = Flows::new();
    let path = flows.dir.path().join("bom.json");
    let flow = json!({"version": 1, "id": "bom", "steps": [{"id": "say", "type": "send_message", "text": "hi"}]});
    std::fs::write(&path, format!("\u{feff}{flow}")).unwrap();
    let validate = tern().args(["validate", path.to_str().unwrap()]).output().unwrap();
    assert!(validate.status.success(), "{}", String::from_utf8_lossy(&validate.stdout));
    let run = tern().args(["run", path.to_str().unwrap(), "--message", "x", "--json"]).output().unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{out}{}", String::from_utf8_lossy(&run.stderr));
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["replies"][0]["text"], "hi", "{answer}");
}
