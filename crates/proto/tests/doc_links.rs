//! Every relative link in the repository's Markdown files resolves: the file (or directory)
//! exists, and an anchor (`other.md#anchor`, or `#anchor` within the same file) names a
//! heading of the target, slugged as GitHub does. Links with a scheme (`https:`, `mailto:`)
//! are not checked; anchors into files that are not Markdown (`main.rs#L10`) are not either.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `*.md` under `dir`, skipping build output, dependencies and hidden directories.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            let hidden = name.starts_with('.') && name != ".github";
            if hidden || name == "target" || name == "node_modules" {
                continue;
            }
            markdown_files(&path, out);
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// A line that opens or closes a fenced code block: its fence character and length.
fn fence(line: &str) -> Option<(char, usize)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let c = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = rest.chars().take_while(|x| *x == c).count();
    (n >= 3).then_some((c, n))
}

/// The lines of a Markdown file outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        match (open, fence(line)) {
            (None, Some(f)) => open = Some(f),
            (Some((c, n)), Some((c2, n2)))
                if c == c2
                    && n2 >= n
                    && line.trim_start().trim_start_matches(c).trim().is_empty() =>
            {
                open = None
            }
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// Removes inline code spans (any number of backticks) from a paragraph, keeping newlines so
/// that line numbers stay right.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        // Find a closing run of exactly the same length.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|c| **c == '`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                out.extend(chars[i..j + run].iter().filter(|c| **c == '\n'));
                i = j + run;
            }
            // An unmatched run is literal text.
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// GitHub's heading anchor: the heading's text as rendered, lowercased, with every character
/// that is not a letter, a digit, `_`, `-` or a space dropped, and spaces turned into hyphens.
fn slug(heading: &str) -> String {
    // Rendered text: code spans lose their backticks, links keep their text, tags vanish.
    let mut text = String::new();
    let mut chars = heading.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {}
            '<' => {
                for c in chars.by_ref() {
                    if c == '>' {
                        break;
                    }
                }
            }
            ']' if chars.peek() == Some(&'(') => {
                for c in chars.by_ref() {
                    if c == ')' {
                        break;
                    }
                }
            }
            c => text.push(c),
        }
    }
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file: its ATX headings' slugs (duplicates numbered `-1`, `-2`,
/// ... as GitHub does) and explicit `<a id="…">` / `<a name="…">` anchors.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() <= 3 {
            let hashes = trimmed.chars().take_while(|c| *c == '#').count();
            let rest = &trimmed[hashes..];
            if (1..=6).contains(&hashes) && (rest.is_empty() || rest.starts_with([' ', '\t'])) {
                // An optional closing sequence of `#`s is not part of the heading.
                let body = rest.trim();
                let body = match body.trim_end_matches('#') {
                    b if b.is_empty() || b.ends_with([' ', '\t']) => b.trim_end(),
                    _ => body,
                };
                let base = slug(body);
                let mut candidate = base.clone();
                let mut n = 0;
                while seen.contains(&candidate) {
                    n += 1;
                    candidate = format!("{base}-{n}");
                }
                seen.insert(candidate);
            }
        }
        for attr in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(i) = rest.find("<a ") {
                rest = &rest[i + 3..];
                let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
                if let Some(j) = tag.find(attr) {
                    let value = &tag[j + attr.len()..];
                    if let Some(end) = value.find('"') {
                        seen.insert(value[..end].to_owned());
                    }
                }
            }
        }
    }
    seen
}

/// A link found in a file: where, and its destination as written.
#[derive(Debug)]
struct Link {
    line: usize,
    target: String,
}

/// Inline links and images `[text](dest "title")` and reference definitions `[label]: dest`,
/// outside code blocks and code spans.
fn links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    // Paragraphs: runs of prose lines, so that code spans over a line break are seen whole.
    let mut paragraphs: Vec<(usize, String)> = Vec::new();
    let mut last = 0;
    for (n, line) in prose_lines(text) {
        match paragraphs.last_mut() {
            Some((_, p)) if n == last + 1 && !line.trim().is_empty() => {
                p.push('\n');
                p.push_str(line);
            }
            _ => paragraphs.push((n, line.to_owned())),
        }
        last = n;
    }
    for (first, paragraph) in paragraphs {
        let prose = without_code_spans(&paragraph);
        for (k, line) in prose.lines().enumerate() {
            let line_no = first + k;
            let trimmed = line.trim_start();
            if trimmed.starts_with('[')
                && let Some(i) = trimmed.find("]:")
            {
                if let Some(dest) = trimmed[i + 2..].split_whitespace().next() {
                    out.push(Link {
                        line: line_no,
                        target: dest.trim_matches(['<', '>']).to_owned(),
                    });
                }
                continue;
            }
            let mut rest = line;
            while let Some(i) = rest.find("](") {
                let after = &rest[i + 2..];
                // The destination ends at the `)` that balances the opening one.
                let mut depth = 0usize;
                let mut end = None;
                for (j, c) in after.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => {
                            end = Some(j);
                            break;
                        }
                        ')' => depth -= 1,
                        _ => {}
                    }
                }
                let Some(end) = end else { break };
                let inside = after[..end].trim();
                let dest = match inside.strip_prefix('<') {
                    Some(d) => d.split('>').next().unwrap_or(""),
                    None => inside.split_whitespace().next().unwrap_or(""),
                };
                out.push(Link {
                    line: line_no,
                    target: dest.to_owned(),
                });
                rest = &after[end..];
            }
        }
    }
    out
}

fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(i) => {
            let scheme = &target[..i];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `base/rel` with `.` and `..` resolved, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// What is wrong with every relative link of the repository's Markdown, one line each.
fn broken_links(root: &Path) -> (Vec<String>, usize, usize) {
    let root = normalize(&std::fs::canonicalize(root).expect("the repository root"));
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    let mut problems = Vec::new();
    let (mut checked, mut anchored) = (0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable Markdown file");
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for link in links(&text) {
            let target = link.target.as_str();
            if target.is_empty() || has_scheme(target) {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let path = percent_decode(path.split('?').next().unwrap_or(""));
            let resolved = if path.is_empty() {
                file.clone()
            } else if let Some(abs) = path.strip_prefix('/') {
                normalize(&root.join(abs))
            } else {
                normalize(&file.parent().expect("a file's directory").join(&path))
            };
            let here = format!("{shown}:{}: ({target})", link.line);
            if !resolved.starts_with(&root) {
                problems.push(format!("{here} points outside the repository"));
                continue;
            }
            if !resolved.exists() {
                problems.push(format!("{here} {path} does not exist"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|e| e != "md") {
                continue;
            }
            anchored += 1;
            let target_text = std::fs::read_to_string(&resolved).expect("a readable target");
            let known = anchors(&target_text);
            let anchor = percent_decode(anchor);
            if !known.contains(&anchor) {
                let near: Vec<&String> = known
                    .iter()
                    .filter(|k| {
                        let stem = anchor.split('-').find(|w| w.len() > 2).unwrap_or(&anchor);
                        k.contains(stem)
                    })
                    .take(5)
                    .collect();
                problems.push(format!(
                    "{here} no heading with anchor #{anchor} in {}{}",
                    resolved.strip_prefix(&root).unwrap_or(&resolved).display(),
                    if near.is_empty() {
                        String::new()
                    } else {
                        format!(" (near: {near:?})")
                    }
                ));
            }
        }
    }
    (problems, checked, anchored)
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let (problems, checked, anchored) = broken_links(&repo_root());
    // The walk found the docs: the README and docs/ alone hold dozens of links.
    assert!(
        checked >= 20 && anchored >= 5,
        "only {checked} links ({anchored} with anchors) found"
    );
    assert!(
        problems.is_empty(),
        "{} broken link(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("8. Limits"), "8-limits");
    assert_eq!(slug("Media (SFU)"), "media-sfu");
    assert_eq!(
        slug("Behind NAT: `media_public_addr`"),
        "behind-nat-media_public_addr"
    );
    assert_eq!(
        slug("Media: the SFU and the media task"),
        "media-the-sfu-and-the-media-task"
    );
    assert_eq!(slug("`hello`"), "hello");
    assert_eq!(slug("What's new — 2.0"), "whats-new--20");
    assert_eq!(slug("See [the spec](spec.md#x) now"), "see-the-spec-now");
    assert_eq!(slug("Café au lait"), "café-au-lait");
    let a = anchors(
        "# Intro\n\n## Setup\n\n```sh\n# not a heading\n```\n\n## Setup\n### Setup ##\n<a id=\"custom\"></a>\n",
    );
    let expected: BTreeSet<String> = ["intro", "setup", "setup-1", "setup-2", "custom"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(a, expected);
}

#[test]
fn links_skip_code_and_find_every_form() {
    let text = "See [a](a.md#x) and `[b](b.md)` and ``[c](c.md)``.\n\
                A span over a line `[d](d.md)\nstill code` then [e](<e f.md> \"t\").\n\
                \n\
                ```md\n[g](g.md)\n```\n\
                ![img](pic.png) [h](h.md#y (with parens)) [i](#local)\n\
                [ref]: ref.md#z\n";
    let found: Vec<(usize, String)> = links(text)
        .into_iter()
        .map(|l| (l.line, l.target))
        .collect();
    let expected: Vec<(usize, String)> = [
        (1, "a.md#x"),
        (3, "e f.md"),
        (8, "pic.png"),
        (8, "h.md#y"),
        (8, "#local"),
        (9, "ref.md#z"),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.to_owned()))
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn broken_links_are_reported() {
    let dir = std::env::temp_dir().join(format!("confer-doc-links-{}", std::process::id()));
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        dir.join("README.md"),
        "# Top\n[ok](docs/a.md#part-two) [bad anchor](docs/a.md#part-3) [gone](docs/nope.md)\n\
         [self](#top) [self bad](#bottom) [web](https://example.org/x.md#y)\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("a.md"),
        "# A\n## Part two\n[up](../README.md#top) [up bad](../README.md#a)\n",
    )
    .unwrap();
    let (problems, checked, _) = broken_links(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(checked, 7, "{problems:?}");
    let text = problems.join("\n");
    assert_eq!(problems.len(), 4, "{text}");
    for needle in [
        "README.md:2: (docs/a.md#part-3) no heading",
        "README.md:2: (docs/nope.md) docs/nope.md does not exist",
        "README.md:3: (#bottom) no heading",
        "docs/a.md:3: (../README.md#a) no heading",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
}
