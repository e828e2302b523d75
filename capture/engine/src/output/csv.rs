//! Minimal RFC 4180 CSV writer: quotes a field only when it must.

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

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    pub fn into_inner(self) -> W {
        self.w
    }
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
}
