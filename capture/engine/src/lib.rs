//! voxtap's call engine: every packet source (a pcap file, XDP, RPCAP, HEP)
//! feeds the same [`pipeline::Pipeline`], which decodes frames, rebuilds
//! calls from SIP, SDP, RTP and RTCP, joins the legs of one logical call and
//! hands finished calls to the outputs (per-call folders, CSVs, the media
//! step, the SQLite call index). No sockets, no threads of its own: the
//! sensor crate runs it live, `import` runs it over files.

pub mod calls;
pub mod import;
pub mod index;
pub mod live_calls;
pub mod media;
pub mod output;
pub mod parallel;
pub mod pcapfile;
pub mod pipeline;
pub mod signalling;
pub mod stream_timeline;
pub mod synth;
pub mod tap;

pub use calls::{Call, CallState, PacketRef};
pub use import::{ImportOptions, ImportReport, run_import};
pub use index::{INDEX_FILE, Index};
pub use output::CallWriter;
pub use pipeline::{Pipeline, PipelineConfig};
