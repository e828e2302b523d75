//! Calls rebuilt from SIP, SDP, RTP and RTCP.

mod call;
mod endpoints;
mod floods;
pub mod legs;
mod orphans;
mod table;

pub use call::{
    Call, CallState, EndReason, MediaInfo, PacketRef, RtcpView, SipEntry, Stream, StreamKey,
};
pub use endpoints::EndpointEvent;
pub use floods::{FloodReason, FloodSummary};
pub use table::{CallConfig, CallTable, CallTableStats};
