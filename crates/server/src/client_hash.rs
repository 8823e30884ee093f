//! The web client's build hash (`confer client-hash`): what a mediator compares with the hash
//! the "About this client" screen shows, and what an operator publishes.
//!
//! The hash is computed from the files on disk exactly as the build writes it into
//! `client-manifest.json` (web-client/vite.config.ts): one line `SHA256HEX  PATH\n` per file
//! of the web root (paths relative, `/`-separated, sorted bytewise; `client-manifest.json`
//! itself left out), the same lines `sha256sum` prints, and the build hash is the SHA-256 of
//! all of them. So anyone can recompute it: `cd web-client/dist && find . -type f ! -name
//! client-manifest.json | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The manifest file the build writes next to `index.html`.
pub const MANIFEST: &str = "client-manifest.json";

/// Every file of the web root and its SHA-256, sorted by path; and the build hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHash {
    /// `(path, sha256 hex)`, sorted bytewise by path.
    pub files: Vec<(String, String)>,
    /// SHA-256 (hex) of the `sha256sum` lines of all files.
    pub build: String,
}

/// Hashes the web root `dir` (errors name the file that could not be read).
pub fn compute(dir: &Path) -> std::io::Result<ClientHash> {
    let mut paths = Vec::new();
    walk(dir, dir, &mut paths)?;
    let mut files = Vec::with_capacity(paths.len());
    for (rel, path) in paths {
        if rel == MANIFEST {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?;
        files.push((rel, hex::encode(Sha256::digest(&bytes))));
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (rel, sum) in &files {
        h.update(format!("{sum}  {rel}\n").as_bytes());
    }
    Ok(ClientHash {
        files,
        build: hex::encode(h.finalize()),
    })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot read {}: {e}", dir.display()))
    })?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .map_err(|_| std::io::Error::other("a file outside the web root"))?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
    Ok(())
}

/// The build hash the manifest on disk states, if it has one.
pub fn manifest_build(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("build")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256sum_of_the_sorted_files_without_the_manifest() {
        let dir = std::env::temp_dir().join(format!("confer-client-hash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), b"<!doctype html>").unwrap();
        std::fs::write(dir.join("assets/a.js"), b"a").unwrap();
        std::fs::write(dir.join(MANIFEST), b"{\"build\":\"x\"}").unwrap();
        let h = compute(&dir).unwrap();
        let a = hex::encode(Sha256::digest(b"a"));
        let i = hex::encode(Sha256::digest(b"<!doctype html>"));
        assert_eq!(
            h.files,
            vec![
                ("assets/a.js".into(), a.clone()),
                ("index.html".into(), i.clone())
            ]
        );
        let lines = format!("{a}  assets/a.js\n{i}  index.html\n");
        assert_eq!(h.build, hex::encode(Sha256::digest(lines.as_bytes())));
        // One byte changed anywhere changes the build hash; the manifest itself does not count.
        std::fs::write(dir.join(MANIFEST), b"{}").unwrap();
        assert_eq!(compute(&dir).unwrap().build, h.build);
        std::fs::write(dir.join("assets/a.js"), b"b").unwrap();
        assert_ne!(compute(&dir).unwrap().build, h.build);
        assert_eq!(manifest_build(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
