//! calls.csv and streams.csv written as calls end, for a sensor that runs
//! for months: kept in memory until the end (to sort them by start time, as
//! import does), their rows grew by a few KiB per call without bound (the
//! soak run in README showed it). Rows are then in the order calls ended.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::csv::CsvWriter;
use super::{CALLS_HEADER, CallWriter, FAX_HEADER, OutputError, STREAMS_HEADER, io_err};

pub(super) struct StreamedCsv {
    calls: (PathBuf, CsvWriter<BufWriter<File>>),
    streams: (PathBuf, CsvWriter<BufWriter<File>>),
    fax: (PathBuf, CsvWriter<BufWriter<File>>),
}

fn open(
    path: PathBuf,
    header: &[&str],
) -> Result<(PathBuf, CsvWriter<BufWriter<File>>), OutputError> {
    let f = File::create(&path).map_err(io_err(&path))?;
    let mut w = CsvWriter::new(BufWriter::new(f));
    w.row(header.iter().copied()).map_err(io_err(&path))?;
    Ok((path, w))
}

impl CallWriter {
    /// Appends each call's rows to calls.csv, streams.csv and fax.csv as it is
    /// written (flushed per call) instead of keeping them for `finish`.
    pub fn streaming_csv(mut self) -> Result<Self, OutputError> {
        self.streamed = Some(StreamedCsv {
            calls: open(self.dir.join("calls.csv"), CALLS_HEADER)?,
            streams: open(self.dir.join("streams.csv"), STREAMS_HEADER)?,
            fax: open(self.dir.join("fax.csv"), FAX_HEADER)?,
        });
        Ok(self)
    }

    /// Moves the rows gathered so far to the files (no-op unless streaming).
    pub(super) fn spill_rows(&mut self) -> Result<(), OutputError> {
        let Some(s) = self.streamed.as_mut() else {
            return Ok(());
        };
        for (rows, (path, w)) in [
            (&mut self.call_rows, &mut s.calls),
            (&mut self.stream_rows, &mut s.streams),
            (&mut self.fax_rows, &mut s.fax),
        ] {
            for (_, r) in rows.drain(..) {
                w.encoded(&r).map_err(io_err(path))?;
            }
            w.get_mut().flush().map_err(io_err(path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::PacketRef;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::synth::{SynthConfig, generate};
    use voxtap_proto::pcapio::PcapReader;

    /// 2,000 Call-IDs that differ only in punctuation, and 2,000 sharing a
    /// 100-character prefix, in both modes: a bounded number of name probes
    /// per call.
    #[test]
    fn folder_names_take_constant_probes_per_call() {
        let base = std::env::temp_dir().join(format!("voxtap-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let prefix = "p".repeat(100);
        let puncts = ['!', '#', '$', '%', '&', '(', ')', '*', '+', ','];
        let ids: Vec<String> = (0..2000u32)
            .map(|i| {
                let mut s: String = (0..4)
                    .map(|k| puncts[(i / 10u32.pow(k) % 10) as usize])
                    .collect();
                s.push_str("@h");
                s
            })
            .chain((0..2000).map(|i| format!("{prefix}{i}@h")))
            .collect();
        for streamed in [false, true] {
            let dir = base.join(format!("s{streamed}"));
            let mut w = CallWriter::new(&dir, Vec::new()).unwrap();
            if streamed {
                w = w.streaming_csv().unwrap();
            }
            let mut names = std::collections::HashSet::new();
            for id in &ids {
                let n = w.folder_name(id.as_bytes());
                if streamed {
                    std::fs::create_dir(dir.join(&n)).unwrap();
                }
                assert!(names.insert(n));
            }
            assert!(
                w.names.probes() <= 2 * ids.len() as u64,
                "streamed {streamed}: {} probes for {} calls",
                w.names.probes(),
                ids.len()
            );
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn lines(path: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// Rows are on disk as soon as each call is written, none kept in
    /// memory, and the files end with the same rows as the sorted ones.
    #[test]
    fn rows_on_disk_per_call_and_same_rows_as_sorted() {
        let mut bytes = Vec::new();
        let cfg = SynthConfig {
            calls: 4,
            seconds: 1,
            ramp_seconds: 1,
            loss_pct: 0.0,
            jitter_ms: 0.0,
            seed: 3,
            media_server: None,
        };
        generate(&cfg, &mut bytes).unwrap();
        let mut r = PcapReader::new(std::io::Cursor::new(bytes)).unwrap();
        let mut p = Pipeline::new(PipelineConfig::default());
        while let Some(rec) = r.next_packet().unwrap() {
            p.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
        }
        p.finish();
        let calls = p.drain_ended();
        assert_eq!(calls.len(), 4);
        let base = std::env::temp_dir().join(format!("voxtap-streamed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (a, b) = (base.join("streamed"), base.join("sorted"));
        let mut ws = CallWriter::new(&a, Vec::new())
            .and_then(CallWriter::streaming_csv)
            .unwrap()
            .without_call_files();
        let mut wb = CallWriter::new(&b, Vec::new())
            .unwrap()
            .without_call_files();
        for (i, c) in calls.iter().enumerate() {
            ws.write_call(c).unwrap();
            wb.write_call(c).unwrap();
            assert!(ws.call_rows.is_empty() && ws.stream_rows.is_empty());
            assert_eq!(
                lines(&a.join("calls.csv")).len(),
                i + 2,
                "header + rows so far"
            );
        }
        ws.finish().unwrap();
        wb.finish().unwrap();
        for f in ["calls.csv", "streams.csv"] {
            assert_eq!(lines(&a.join(f)), lines(&b.join(f)), "{f}");
        }
        assert_eq!(lines(&a.join("streams.csv")).len(), 1 + 8);

        // Folder names: unique without a set in memory, across runs too.
        let src = base.join("synth.pcap");
        let mut pcap = Vec::new();
        generate(&cfg, &mut pcap).unwrap();
        std::fs::write(&src, &pcap).unwrap();
        let live = base.join("live");
        let mut names = Vec::new();
        for _run in 0..2 {
            let mut w = CallWriter::new(&live, vec![src.clone()])
                .and_then(CallWriter::streaming_csv)
                .unwrap();
            for _ in 0..2 {
                names.push(w.write_call(&calls[0]).unwrap().folder.unwrap());
            }
            assert!(w.names.remembered() <= 1);
            w.finish().unwrap();
        }
        let b0 = names[0].clone();
        assert_eq!(
            names,
            vec![
                b0.clone(),
                format!("{b0}-2"),
                format!("{b0}-3"),
                format!("{b0}-4")
            ]
        );
        assert!(live.join(&names[3]).join("call.pcap").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
