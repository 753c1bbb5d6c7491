//! What the CLI prints: aligned tables for people, and the `--json` shapes for scripts
//! (the same shapes as the HTTP API where one exists).

use std::fmt::Write as _;
use std::io::{self, Write};

use kv_client::Error;
use kv_client::bench::{BenchConfig, BenchReport};
use kv_server::api::{Consistency, ListResponse, Member};
use serde_json::{Value, json};

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        if row.len() > widths.len() {
            widths.resize(row.len(), 0);
        }
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let _ = write!(text, "{cell:<width$}", width = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Prints `value` as JSON on one line.
pub fn print_json(value: &Value) {
    println!("{value}");
}

/// Prints an error: `error: message` on stderr, or with `--json` a JSON object on stdout
/// (`{"error": message, "kind": kind}`), so that a script reading stdout always gets JSON.
pub fn print_error(json: bool, err: &Error) {
    if json {
        print_json(&json!({"error": err.to_string(), "kind": err.kind_name()}));
    } else {
        eprintln!("error: {err}");
    }
}

/// A key and value as JSON: `"value"` when the value is UTF-8, else `"value_base64"` (as the
/// HTTP API lists them).
pub fn item_json(key: &str, value: &[u8]) -> Value {
    match std::str::from_utf8(value) {
        Ok(s) => json!({"key": key, "value": s}),
        Err(_) => json!({"key": key, "value_base64": kv_server::api::base64(value)}),
    }
}

/// A value for a terminal line: UTF-8 as it is with `\` escapes for control characters, other
/// bytes as `\xNN`.
pub fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Writes raw bytes to stdout.
pub fn write_raw(value: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(value)?;
    stdout.flush()
}

/// A list page: one key per line, or `key<TAB>value` lines (values escaped), and a note on
/// stderr when more keys follow. With `--json`, the HTTP API's shape.
pub fn print_list(json: bool, page: &ListResponse, values: bool) {
    if json {
        let body = if values {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|i| item_json(&i.key, i.value.as_deref().unwrap_or_default()))
                .collect();
            json!({"items": items, "more": page.more})
        } else {
            let keys: Vec<&str> = page.items.iter().map(|i| i.key.as_str()).collect();
            json!({"keys": keys, "more": page.more})
        };
        print_json(&body);
        return;
    }
    let mut out = String::new();
    for item in &page.items {
        out.push_str(&escape(item.key.as_bytes()));
        if values {
            out.push('\t');
            out.push_str(&escape(item.value.as_deref().unwrap_or_default()));
        }
        out.push('\n');
    }
    print!("{out}");
    if page.more
        && let Some(last) = page.items.last()
    {
        eprintln!("(more keys follow: list again with --after {:?})", last.key);
    }
}

/// The members as a table, or `{"members": [...]}`.
pub fn print_members(json: bool, members: &[Member]) {
    if json {
        print_json(&json!({ "members": members }));
        return;
    }
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.peer_url.clone(),
                if m.voter { "voter" } else { "learner" }.to_owned(),
                if m.leader { "yes" } else { "" }.to_owned(),
            ]
        })
        .collect();
    print!("{}", table(&["ID", "PEER URL", "ROLE", "LEADER"], &rows));
}

/// A bench report, for people or as JSON.
pub fn print_bench(json: bool, config: &BenchConfig, report: &BenchReport) {
    if json {
        print_json(&report.to_json(config));
        return;
    }
    let ms = |q: f64| format!("{:.3}", report.latency(q).as_secs_f64() * 1e3);
    let max = format!("{:.3}", report.latency_us.max() as f64 / 1e3);
    let errors = if report.errors.is_empty() {
        "0".to_owned()
    } else {
        let kinds: Vec<String> = report
            .errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        format!("{} ({})", report.error_count(), kinds.join(", "))
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "protocol    {} ({} clients over {} connections, {} endpoints)",
        report.protocol.name(),
        report.clients,
        report.connections,
        config.endpoints.len()
    );
    let _ = match &report.leader {
        Some(leader) => writeln!(
            out,
            "routing     {} (every connection to {leader})",
            report.routing.name()
        ),
        None => writeln!(
            out,
            "routing     {} (connections round-robin over the endpoints)",
            report.routing.name()
        ),
    };
    let _ = writeln!(
        out,
        "workload    {:.0}% reads ({}), {}-byte values, {} keys",
        config.read_ratio * 100.0,
        match config.consistency {
            Consistency::Linearizable => "linearizable",
            Consistency::Serializable => "serializable",
        },
        config.value_size,
        config.keyspace
    );
    let _ = writeln!(
        out,
        "ops         {} in {:.2}s ({} reads, {} writes)",
        report.ok(),
        report.elapsed.as_secs_f64(),
        report.reads,
        report.writes
    );
    let _ = writeln!(out, "errors      {errors}");
    let _ = writeln!(out, "throughput  {:.0} ops/s", report.throughput());
    let _ = writeln!(
        out,
        "latency     p50 {}ms  p90 {}ms  p99 {}ms  p99.9 {}ms  max {max}ms  (mean {:.3}ms)",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        report.latency_us.mean() / 1e3
    );
    print!("{out}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "NAME", "X"],
            &[
                vec!["1".into(), "a-long-name".into(), "y".into()],
                vec!["22".into(), "b".into(), "".into()],
            ],
        );
        assert_eq!(t, "ID  NAME         X\n1   a-long-name  y\n22  b\n");
    }

    #[test]
    fn escaping_keeps_text_and_shows_bytes() {
        assert_eq!(escape(b"plain text"), "plain text");
        assert_eq!(escape(b"a\tb\nc\\"), "a\\tb\\nc\\\\");
        assert_eq!(escape(b"\xff\x00ok"), "\\xff\\u{0}ok");
        assert_eq!(escape("é".as_bytes()), "é");
    }

    #[test]
    fn non_utf8_values_are_base64() {
        assert_eq!(
            item_json("k", &[0xff]),
            json!({"key": "k", "value_base64": "/w=="})
        );
    }
}
