//! Calls rebuilt from SIP, SDP, RTP and RTCP.

mod call;
mod call_ids;
mod closed;
mod endpoint;
mod endpoint_uses;
mod endpoints;
mod floods;
pub mod legs;
mod media_only;
mod orphans;
mod packet_log;
mod spill;
mod table;
mod trim;

pub(crate) use call::SipPacket;
pub use call::{
    Call, CallState, EndReason, FaxStream, MediaInfo, PacketRef, RecentPacket, RtcpView, SipEntry,
    Stream, StreamKey,
};
pub use endpoint::Endpoint;
pub use endpoints::EndpointEvent;
pub use floods::{FloodReason, FloodSummary};
pub use spill::{Spill, SpillStats};
pub use table::{Agreed, CallConfig, CallTable, CallTableStats, DueSet, PostedLatch};
