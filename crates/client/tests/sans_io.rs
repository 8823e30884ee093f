//! The client core (`src/core/`) is sans-IO like the other cores (ARCHITECTURE.md): the
//! caller passes in `now` and the RNG; nothing there may reach for a clock, a socket, a
//! runtime or the OS RNG. The TypeScript twin has the same rule, enforced by its linter.

const FORBIDDEN: &[&str] = &[
    "Instant::now",
    "SystemTime",
    "tokio",
    "std::net",
    "std::thread",
    "getrandom",
    "os_rng",
    "thread_rng",
    "webrtc",
    "std::fs",
];

#[test]
fn the_core_reads_no_clock_and_does_no_io() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = 0;
    let mut found = Vec::new();
    for e in std::fs::read_dir(&dir).expect("src/core") {
        let path = e.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        files += 1;
        for (n, line) in text.lines().enumerate() {
            // Doc examples (`//!`, `///`) may show how a caller drives the core.
            if line.trim_start().starts_with("//") {
                continue;
            }
            for f in FORBIDDEN {
                if line.contains(f) {
                    found.push(format!("{}:{}: {f}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(files >= 10, "the core is split by concern: {files} files");
    assert!(found.is_empty(), "{found:#?}");
}
