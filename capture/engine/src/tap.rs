//! A side channel out of the pipeline: whatever a [`PacketTap`] is given
//! (each SIP message, each RTCP packet of a call, each call as it ends) is
//! what an exporter such as HEP sends on. The pipeline calls it inline, so a
//! tap must not block: queue and return.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::calls::Call;

pub trait PacketTap: Send {
    /// One whole SIP message (reassembled when it came over TCP).
    fn sip(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: bool,
        call_id: &[u8],
        message: &[u8],
    );
    /// A plain (not SRTCP) RTCP datagram between endpoints of a call.
    fn rtcp(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        call_id: &[u8],
        payload: &[u8],
    );
    /// A call the table closed, with its final stream statistics.
    fn call_ended(&mut self, call: &Call);
}

/// Makes one tap per pipeline: the configuration is cloned into each
/// source's pipeline (import, live worker, remote capture).
#[derive(Clone)]
pub struct TapFactory(Arc<dyn Fn() -> Box<dyn PacketTap> + Send + Sync>);

impl TapFactory {
    pub fn new(f: impl Fn() -> Box<dyn PacketTap> + Send + Sync + 'static) -> Self {
        TapFactory(Arc::new(f))
    }

    pub fn make(&self) -> Box<dyn PacketTap> {
        (self.0)()
    }
}

impl fmt::Debug for TapFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TapFactory")
    }
}
