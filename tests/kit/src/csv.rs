//! Reading voxtap's CSV output (calls.csv, streams.csv) as rows of
//! column -> value, quoted fields included.

use std::collections::HashMap;
use std::path::Path;

/// One of our CSV files as rows of column -> value.
pub fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = parse_csv(&text).into_iter();
    let header = rows.next().expect("CSV header");
    rows.map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

/// Complete rows below the header (a row being written, not yet ended by
/// its newline, is not counted); 0 when the file does not exist yet.
pub fn csv_rows(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches('\n').count().saturating_sub(1))
        .unwrap_or(0)
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_commas_and_quotes() {
        let rows = parse_csv("a,b,c\n1,\"x, \"\"y\"\"\",3\r\n4,,6");
        assert_eq!(
            rows,
            vec![
                vec!["a", "b", "c"],
                vec!["1", "x, \"y\"", "3"],
                vec!["4", "", "6"]
            ]
        );
    }

    #[test]
    fn rows_count_only_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("calls.csv");
        assert_eq!(csv_rows(&p), 0);
        std::fs::write(&p, "call_id,state\nA,answered\nB,answ").unwrap();
        assert_eq!(csv_rows(&p), 1);
    }
}
