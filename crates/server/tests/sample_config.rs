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
    // And every key has a comment above it; a table (`[cluster]`) comes after the plain keys,
    // with a comment above it and above each of its keys.
    for (key, value) in &defaults {
        let Some(table) = value.as_table() else {
            assert_commented(SAMPLE, &format!("\n{key} ="), key);
            continue;
        };
        let at = assert_commented(SAMPLE, &format!("\n[{key}]\n"), key);
        let section = &SAMPLE[at..];
        let sample_table = sample[key.as_str()].as_table().expect("a table");
        for inner in table.keys() {
            assert!(sample_table.contains_key(inner), "{key}.{inner} missing");
            assert_commented(section, &format!("\n{inner} ="), &format!("{key}.{inner}"));
        }
    }
}

// Where `needle` is in `text`, checking the line above it is a comment.
fn assert_commented(text: &str, needle: &str, key: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{key} not at line start"));
    let prev_line = text[..at].lines().last().unwrap_or("");
    assert!(
        prev_line.starts_with('#'),
        "{key} has no comment line above it"
    );
    at
}
