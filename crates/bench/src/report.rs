//! Tables: each benchmark builds its results as a [`Table`], which prints as Markdown (what
//! docs/benchmarks.md records) and serializes into `summary.json` as one object per table,
//! figures and ratios keyed by the column headings exactly as printed.
//!
//! Tables printed by other programs (the web client's `npm run bench`) are read back from
//! their Markdown with [`tables_in_markdown`], so the summary holds every table of a run.

use serde_json::{Map, Value, json};

/// One cell: what is printed, and the number behind it if there is one.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    text: String,
    value: Option<f64>,
}

impl Cell {
    /// A number printed with `decimals` decimals and thousands separators.
    pub(crate) fn num(value: f64, decimals: usize) -> Self {
        Self {
            text: grouped(value, decimals),
            value: value.is_finite().then_some(value),
        }
    }

    /// Words (a label or a target); numbers inside it are not parsed.
    pub(crate) fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            value: None,
        }
    }

    fn json(&self) -> Value {
        match self.value {
            Some(v) => json!(v),
            None => json!(self.text),
        }
    }
}

/// A table of results.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table; `title` is the line printed above it and its name in the summary.
    pub(crate) fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Self {
            title: title.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub(crate) fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "{}", self.title);
        self.rows.push(cells);
    }

    /// Prints it as Markdown, its title above it.
    pub(crate) fn print(&self) {
        println!();
        println!("{}", self.title);
        println!();
        println!("| {} |", self.columns.join(" | "));
        // Numbers right-aligned, words left (the first cell of a row is its label).
        let align: Vec<&str> = (0..self.columns.len())
            .map(|i| {
                let numeric = self.rows.iter().all(|r| r[i].value.is_some());
                if numeric && i > 0 { "---:" } else { "---" }
            })
            .collect();
        println!("|{}|", align.join("|"));
        for r in &self.rows {
            let cells: Vec<&str> = r.iter().map(|c| c.text.as_str()).collect();
            println!("| {} |", cells.join(" | "));
        }
    }

    /// `{"table": title, "columns": [...], "rows": [{column: number or text}]}`.
    pub(crate) fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let obj: Map<String, Value> = self
                    .columns
                    .iter()
                    .zip(r)
                    .map(|(c, cell)| (c.clone(), cell.json()))
                    .collect();
                Value::Object(obj)
            })
            .collect();
        json!({ "table": self.title, "columns": self.columns, "rows": rows })
    }
}

/// `1234567.8` with 0 decimals is `1,234,568`.
fn grouped(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    let s = format!("{:.decimals$}", value.abs());
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    if value < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.insert(0, '-');
    }
    out
}

/// The Markdown tables in a program's output: each titled by the last line of prose above it.
/// A cell that reads as a number (thousands separators, a trailing `%` allowed) becomes one.
pub(crate) fn tables_in_markdown(text: &str, source: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut title = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if !line.starts_with('|') {
            if !line.is_empty() {
                title = line.to_owned();
            }
            continue;
        }
        let columns = split_row(line);
        // The separator row must follow the heading.
        if !lines.peek().is_some_and(|l| l.trim().starts_with("|-")) {
            continue;
        }
        lines.next();
        let mut table = Table::new(
            format!("{title} ({source})"),
            &columns.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        while let Some(row) = lines
            .peek()
            .map(|l| l.trim())
            .filter(|l| l.starts_with('|'))
        {
            let cells = split_row(row)
                .into_iter()
                .map(|c| match parse_number(&c) {
                    Some(v) => Cell {
                        text: c,
                        value: Some(v),
                    },
                    None => Cell::text(c),
                })
                .collect::<Vec<_>>();
            if cells.len() == table.columns.len() {
                table.rows.push(cells);
            }
            lines.next();
        }
        tables.push(table);
    }
    tables
}

fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

fn parse_number(cell: &str) -> Option<f64> {
    let s = cell.trim().trim_end_matches('%').replace(',', "");
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(1_234_567.8, 0), "1,234,568");
        assert_eq!(grouped(999.0, 0), "999");
        assert_eq!(grouped(0.456, 2), "0.46");
        assert_eq!(grouped(-1234.5, 1), "-1,234.5");
    }

    #[test]
    fn markdown_tables_read_back_with_numbers_and_words() {
        let out = "Frames (Node 20)\n\n| payload | frames/s | ratio | target |\n|---:|---:|---:|---|\n| 160 B (audio) | 42,801 | 0.60 | ≥ 0.50 |\n";
        let t = tables_in_markdown(out, "web");
        assert_eq!(t.len(), 1);
        let j = t[0].to_json();
        assert_eq!(j["table"], "Frames (Node 20) (web)");
        assert_eq!(j["rows"][0]["frames/s"], 42801.0);
        assert_eq!(j["rows"][0]["ratio"], 0.6);
        assert_eq!(j["rows"][0]["payload"], "160 B (audio)");
        assert_eq!(j["rows"][0]["target"], "≥ 0.50");
    }
}
