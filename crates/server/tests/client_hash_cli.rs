#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `confer client-hash`: prints the build hash of a web root, and fails when the folder's
//! client-manifest.json states another build (a file changed after the build).

use std::process::Command;

use sha2::{Digest, Sha256};

/// Runs `confer client-hash --web-root DIR`: (success, stdout, stderr).
fn client_hash(dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_confer"))
        .args(["client-hash", "--web-root"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn prints_the_build_hash_and_refuses_a_folder_changed_after_its_build() {
    let dir = std::env::temp_dir().join(format!("confer-client-hash-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), b"<!doctype html><title>x</title>").unwrap();
    let sum = hex::encode(Sha256::digest(b"<!doctype html><title>x</title>"));
    let build = hex::encode(Sha256::digest(format!("{sum}  index.html\n").as_bytes()));
    std::fs::write(
        dir.join("client-manifest.json"),
        format!("{{\"build\":\"{build}\",\"files\":{{\"index.html\":\"{sum}\"}}}}"),
    )
    .unwrap();

    let (ok, stdout, stderr) = client_hash(&dir);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), build);

    // The page changed after the build: the hash printed is the files', and it fails.
    std::fs::write(dir.join("index.html"), b"<!doctype html><title>y</title>").unwrap();
    let (ok, _, err) = client_hash(&dir);
    assert!(!ok);
    assert!(err.contains("was changed after the build"), "{err}");

    // A folder with no page says what to do.
    std::fs::remove_file(dir.join("index.html")).unwrap();
    let (ok, _, err) = client_hash(&dir);
    assert!(!ok);
    assert!(err.contains("build the web client first"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
