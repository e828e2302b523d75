//! `floods.csv`: new dialogs the call table summarised instead of recording
//! them one by one (see `calls::FloodSummary`), one row per source and
//! reason. Written as summaries come, in the order they ended; the file
//! appears with the first one.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};

use super::csv::CsvWriter;
use super::{CallWriter, OutputError, format_ts, io_err};
use crate::calls::FloodSummary;

pub const FLOODS_FILE: &str = "floods.csv";

pub const FLOODS_HEADER: &[&str] = &[
    "source",
    "method",
    "reason",
    "dialogs",
    "first",
    "last",
    "example_call_id",
    "example_dst",
];

impl CallWriter {
    /// Appends the summaries to `floods.csv` (created, with its header, on
    /// the first one of this run).
    pub fn write_floods(&mut self, floods: &[FloodSummary]) -> Result<(), OutputError> {
        if floods.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(FLOODS_FILE);
        let w = match &mut self.floods {
            Some(w) => w,
            None => {
                let f = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let mut w = CsvWriter::new(BufWriter::new(f));
                w.row(FLOODS_HEADER.iter().copied())
                    .map_err(io_err(&path))?;
                self.floods.insert(w)
            }
        };
        for f in floods {
            let row = [
                f.source
                    .map_or_else(|| "other sources".to_string(), |ip| ip.to_string()),
                f.method.clone(),
                f.reason.as_str().to_string(),
                f.dialogs.to_string(),
                format_ts(f.first_ns),
                format_ts(f.last_ns),
                f.example_call_id.clone(),
                f.example_dst.to_string(),
            ];
            w.row(row.iter().map(String::as_str))
                .map_err(io_err(&path))?;
        }
        w.get_mut().flush().map_err(io_err(&path))
    }
}

/// The open `floods.csv`, if any row was written.
pub(super) type FloodsCsv = Option<CsvWriter<BufWriter<File>>>;
