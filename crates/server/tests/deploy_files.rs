//! The deployment files under deploy/ set only settings the server has: every `CONFER_*`
//! variable they name is one `Config::with_env` accepts (an unknown one stops the server at
//! start-up). And each node of deploy/cluster/compose.yaml is configured as a cluster node.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use confer_server::Config;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files that set the server's environment: the compose files, the Dockerfile, the systemd
/// unit and the Helm chart (its values and every template).
fn deploy_files() -> Vec<PathBuf> {
    let root = deploy_dir();
    let mut files: Vec<PathBuf> = [
        "compose.yaml",
        "cluster/compose.yaml",
        "Dockerfile",
        "confer.service",
        "helm/confer/values.yaml",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    let templates = root.join("helm/confer/templates");
    let mut chart: Vec<PathBuf> = std::fs::read_dir(&templates)
        .unwrap_or_else(|e| panic!("{}: {e}", templates.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .collect();
    chart.sort();
    assert!(
        chart
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "yaml")),
        "no templates found in {}",
        templates.display()
    );
    files.extend(chart);
    files
}

/// Every `CONFER_…` name in `text`: `CONFER_` and capitals, digits and underscores. A name
/// ending in `_` is a prefix (as in `CONFER_CLUSTER_<KEY>`), not a name.
fn confer_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "CONFER_";
    let mut names = BTreeSet::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(PREFIX) {
        let at = from + found;
        let tail = &text[at + PREFIX.len()..];
        let len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &text[at..at + PREFIX.len() + len];
        // Not the end of a longer identifier (`MY_CONFER_X`).
        let starts_word = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if starts_word && len > 0 && !name.ends_with('_') {
            names.insert(name.to_owned());
        }
        from = at + PREFIX.len() + len;
    }
    names
}

/// Whether the server takes `name` with a value of some type: a number, a boolean, an address
/// or a string. A name that is no config key is refused whatever the value.
fn accepted(name: &str) -> bool {
    ["1", "true", "127.0.0.1:1", "x"].iter().any(|value| {
        Config::default()
            .with_env([(name.to_owned(), (*value).to_owned())])
            .is_ok()
    })
}

#[test]
fn the_check_refuses_what_is_no_setting() {
    assert!(accepted("CONFER_LISTEN"));
    assert!(accepted("CONFER_CLUSTER_REDIS_URL"));
    assert!(!accepted("CONFER_NOPE"));
    assert!(!accepted("CONFER_CLUSTER_NOPE"));
    assert!(!accepted("CONFER_CLUSTER"));
    let names = confer_names(
        "CONFER_A: 1\n- name: CONFER_B_2\nENV CONFER_C=x CONFER_CLUSTER_<KEY> MY_CONFER_D $(CONFER_E)",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["CONFER_A", "CONFER_B_2", "CONFER_C", "CONFER_E"]
    );
}

#[test]
fn deploy_files_name_only_settings_the_server_has() {
    let mut unknown = Vec::new();
    for file in deploy_files() {
        let names = confer_names(&read(&file));
        for name in names {
            if !accepted(&name) {
                let shown = file.strip_prefix(deploy_dir()).unwrap_or(&file);
                unknown.push(format!("{name} in deploy/{}", shown.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "not settings of the server (see deploy/confer.sample.toml): {unknown:#?}"
    );
}

/// A service's lines in a compose file: from `  NAME:` to the next line indented as little.
fn compose_service<'a>(compose: &'a str, service: &str) -> Vec<&'a str> {
    let header = format!("  {service}:");
    let mut lines = compose.lines().skip_while(|l| l.trim_end() != header);
    assert!(lines.next().is_some(), "no service {service}");
    lines
        .take_while(|l| l.trim().is_empty() || l.starts_with("   "))
        .collect()
}

/// The `CONFER_*: "value"` environment of a compose service, as given.
fn compose_env(service: &[&str]) -> Vec<(String, String)> {
    service
        .iter()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once(": ")?;
            name.starts_with("CONFER_")
                .then(|| (name.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

#[test]
fn each_node_of_the_cluster_compose_file_is_a_cluster_node() {
    let compose = read(&deploy_dir().join("cluster/compose.yaml"));
    let nginx = read(&deploy_dir().join("cluster/nginx.conf"));
    let mut media_ports = BTreeSet::new();
    for node in ["confer-1", "confer-2", "confer-3"] {
        let service = compose_service(&compose, node);
        let env = compose_env(&service);
        for name in ["CONFER_CLUSTER_REDIS_URL", "CONFER_CLUSTER_NODE_URL"] {
            assert!(
                env.iter().any(|(n, _)| n == name),
                "{node} does not set {name}"
            );
        }
        let config = Config::default()
            .with_env(env)
            .unwrap_or_else(|e| panic!("{node}: {e}"));
        assert!(config.cluster.enabled(), "{node}");
        assert_eq!(
            config.cluster.node_url,
            format!("http://{node}:7880"),
            "{node}: the URL the other nodes reach it at"
        );
        assert_eq!(
            config.listen.port(),
            7880,
            "{node}: the port nginx and the relays use"
        );
        assert_ne!(
            config.signing_key_file.as_os_str(),
            "",
            "{node}: the nodes must share a signing key file"
        );
        // Its own media port, published as such, and announced with it.
        let port = config.media_listen.port();
        assert!(media_ports.insert(port), "{node}: media port {port} taken");
        assert!(
            config.media_public_addr.ends_with(&format!(":{port}")),
            "{node}: media_public_addr {} is not on port {port}",
            config.media_public_addr
        );
        let published = format!("\"127.0.0.1:{port}:{port}/udp\"");
        assert!(
            service.iter().any(|l| l.contains(&published)),
            "{node} does not publish its media port {published}"
        );
        assert!(
            nginx.contains(&format!("server {node}:7880 ")),
            "nginx.conf does not send clients to {node}"
        );
    }
}

#[test]
fn the_helm_chart_makes_cluster_nodes() {
    let statefulset = read(&deploy_dir().join("helm/confer/templates/statefulset.yaml"));
    for name in [
        "CONFER_CLUSTER_REDIS_URL",
        "CONFER_CLUSTER_NODE_URL",
        "CONFER_SIGNING_KEY_FILE",
        "CONFER_MEDIA_PUBLIC_ADDR",
    ] {
        assert!(
            statefulset.contains(&format!("- name: {name}\n")),
            "the StatefulSet does not set {name}"
        );
    }
    // Kubernetes' per-Service variables (for a Service named confer-…) would be unknown settings.
    assert!(statefulset.contains("enableServiceLinks: false"));
}
