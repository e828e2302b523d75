//! SIP over SCTP (RFC 4168): each association direction's DATA chunks
//! become user messages (several per packet, fragmented ones reassembled),
//! and a user message that is SIP goes to the call table like a UDP
//! datagram would.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::Route;
use crate::calls::PacketRef;
use voxtap_proto::sctp::{SctpLimits, SctpReassembler, SctpStats};
use voxtap_proto::sip;
use voxtap_proto::wire::sctp::{Chunks, chunk_type};

/// SCTP figures of a pipeline.
#[derive(Clone, Debug, Default)]
pub struct SctpPipelineStats {
    pub packets: u64,
    /// User messages that parsed as SIP.
    pub sip_messages: u64,
    /// Reassembled from several DATA chunks (of those).
    pub reassembled: u64,
    /// Retransmitted DATA chunks skipped.
    pub duplicates: u64,
    /// Fragments thrown away by the reassembly bounds.
    pub evicted: u64,
    /// DATA on associations that do not carry SIP.
    pub other: u64,
    pub malformed_chunks: u64,
    pub flows_dropped: u64,
}

struct SctpFlow {
    reasm: SctpReassembler,
    last_ns: u64,
}

/// Association directions that carry SIP.
pub(super) struct SctpFlows {
    flows: HashMap<(SocketAddr, SocketAddr), SctpFlow>,
    limits: SctpLimits,
    max_flows: usize,
}

impl SctpFlows {
    pub(super) fn new(limits: SctpLimits, max_flows: usize) -> Self {
        SctpFlows {
            flows: HashMap::new(),
            limits,
            max_flows,
        }
    }

    pub(super) fn sweep(&mut self, now_ns: u64, idle_ns: u64) {
        self.flows
            .retain(|_, f| f.last_ns.saturating_add(idle_ns) > now_ns);
    }

    /// The direction's state, created when the association is worth
    /// following (`sip`); None otherwise or past the cap.
    fn flow(
        &mut self,
        key: (SocketAddr, SocketAddr),
        sip: bool,
        stats: &mut SctpPipelineStats,
    ) -> Option<&mut SctpFlow> {
        if !self.flows.contains_key(&key) {
            if !sip {
                return None;
            }
            if self.flows.len() >= self.max_flows {
                stats.flows_dropped += 1;
                return None;
            }
        }
        Some(self.flows.entry(key).or_insert_with(|| SctpFlow {
            reasm: SctpReassembler::new(),
            last_ns: 0,
        }))
    }
}

impl Route<'_> {
    /// One SCTP packet (`chunks`: what follows its common header).
    pub(super) fn sctp(
        &mut self,
        flows: &mut SctpFlows,
        chunks: &[u8],
        sip_port: bool,
        by_content: bool,
    ) {
        self.calls.tick(self.ts_ns);
        self.stats.sctp.packets += 1;
        let key = (self.src, self.dst);
        for chunk in Chunks::new(chunks) {
            let Ok(chunk) = chunk else {
                self.stats.sctp.malformed_chunks += 1;
                break;
            };
            match chunk.chunk_type() {
                // A new association on these addresses: its TSNs start over.
                chunk_type::INIT | chunk_type::INIT_ACK => {
                    for k in [key, (self.dst, self.src)] {
                        if let Some(f) = flows.flows.get_mut(&k) {
                            f.reasm.reset();
                        }
                    }
                }
                chunk_type::DATA => {
                    let Ok(data) = chunk.data() else {
                        self.stats.sctp.malformed_chunks += 1;
                        continue;
                    };
                    let starts_sip =
                        data.begin() && by_content && sip::looks_like_sip(data.user_data());
                    let limits = flows.limits;
                    let Some(flow) = flows.flow(key, sip_port || starts_sip, &mut self.stats.sctp)
                    else {
                        self.stats.sctp.other += 1;
                        continue;
                    };
                    flow.last_ns = self.ts_ns;
                    let before = flow.reasm.stats();
                    let pref = self.refs.last().map_or(0, |r| r.1.0);
                    if let Some(m) = flow.reasm.push(&data, self.ts_ns, pref, &limits) {
                        let earlier: Vec<(u64, PacketRef)> =
                            m.earlier.iter().map(|&(t, r)| (t, PacketRef(r))).collect();
                        self.sctp_message(m.data, &earlier, sip_port);
                    }
                    self.count(before, flow.reasm.stats());
                }
                _ => {}
            }
        }
    }

    fn count(&mut self, before: SctpStats, after: SctpStats) {
        let s = &mut self.stats.sctp;
        s.duplicates += after.duplicates - before.duplicates;
        s.evicted += after.evicted - before.evicted;
        s.reassembled += after.reassembled - before.reassembled;
    }

    /// A whole user message; `earlier`: the other packets that carried it.
    fn sctp_message(&mut self, data: &[u8], earlier: &[(u64, PacketRef)], sip_port: bool) {
        let (ts_ns, src, dst) = (self.ts_ns, self.src, self.dst);
        if !sip_port && !sip::looks_like_sip(data) {
            self.stats.sctp.other += 1;
            return;
        }
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            self.stats.sip_keepalives += 1;
            return;
        }
        let Ok(msg) = sip::parse(data) else {
            self.stats.sip_errors += 1;
            return;
        };
        self.stats.sip_messages += 1;
        self.stats.sctp.sip_messages += 1;
        if let (Some(t), Some(cid)) = (self.tap.as_mut(), msg.call_id()) {
            t.sip(ts_ns, src, dst, false, cid, data);
        }
        if earlier.is_empty() {
            self.calls.on_sip(ts_ns, src, dst, "SCTP", &msg, self.refs);
        } else {
            let refs: Vec<(u64, PacketRef)> = earlier.iter().chain(self.refs).copied().collect();
            self.calls.on_sip(ts_ns, src, dst, "SCTP", &msg, &refs);
        }
    }
}
