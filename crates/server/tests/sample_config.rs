//! deploy/confer.sample.toml lists every key, with its default.

use confer_server::Config;

const SAMPLE: &str = include_str!("../../../deploy/confer.sample.toml");

#[test]
fn sample_parses_to_the_defaults() {
    let sample = Config::from_toml(SAMPLE, "deploy/confer.sample.toml").unwrap();
    assert_eq!(sample, Config::default());
}

#[test]
fn sample_lists_every_key() {
    let sample: toml::Table = toml::from_str(SAMPLE).unwrap();
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let mut missing: Vec<_> = defaults
        .keys()
        .filter(|k| !sample.contains_key(*k))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "keys missing from the sample: {missing:?}"
    );
    // And every key has a comment above it.
    for key in defaults.keys() {
        let at = SAMPLE
            .find(&format!("\n{key} ="))
            .unwrap_or_else(|| panic!("{key} not at line start"));
        let before = &SAMPLE[..at];
        let prev_line = before.lines().last().unwrap_or("");
        assert!(
            prev_line.starts_with('#'),
            "{key} has no comment line above it"
        );
    }
}
