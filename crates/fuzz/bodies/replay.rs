// Replays a committed seed corpus on stable (for the `*_corpus` tests): no seed panics, and each
// seed's outcome matches its name (`valid-*` accepted, `invalid-*` refused).

/// Every seed of `target` as (file name, bytes), sorted by name.
pub(crate) fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/../fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    assert!(
        seeds.iter().any(|(n, _)| n.starts_with("valid-")),
        "{dir}: no valid- seed"
    );
    assert!(
        seeds.iter().any(|(n, _)| n.starts_with("invalid-")),
        "{dir}: no invalid- seed"
    );
    seeds
}

/// Runs `accepted` (the target body, reporting whether the seed was accepted the way its name
/// says) over every seed and fails listing every seed whose outcome contradicts its name.
pub(crate) fn replay(target: &str, accepted: impl Fn(&str, &[u8]) -> bool) {
    let wrong: Vec<String> = corpus(target)
        .into_iter()
        .filter(|(name, data)| {
            let want = match name.split('-').next() {
                Some("valid") => true,
                Some("invalid") => false,
                _ => panic!("{target}/{name}: seed names start with valid- or invalid-"),
            };
            accepted(name, data) != want
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        wrong.is_empty(),
        "{target}: seeds with the wrong outcome: {wrong:?}"
    );
}
