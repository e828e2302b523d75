//! XDP packet source (Linux only): loads the `capture-ebpf` classifier,
//! configures it, attaches it to an interface, and reads the frames it keeps
//! from its ring buffer.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use voxtap_sensor::xdp::{XdpSensor, XdpConfig};
//! let mut sensor = XdpSensor::load(XdpConfig::default(), &[5060])?;
//! sensor.attach("eth1")?; // native mode, SKB mode as fallback
//! sensor.add_endpoint("192.0.2.10:40000".parse().unwrap())?; // from SDP
//! let mut frames = sensor.take_frame_reader().unwrap();
//! frames.poll(Duration::from_millis(100), |meta, bytes| {
//!     println!("{} bytes, reason {}", bytes.len(), meta.reason);
//! })?;
//! # Ok(()) }
//! ```

mod debug_log;

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    time::Duration,
};

use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf, ring_buf::RingBufItem},
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
pub use voxtap_common::{
    CFG_DROP_AFTER_COPY, CFG_DROP_UNKEPT, CFG_HEURISTIC_RTP, CFG_KEEP_FRAGMENTS, CFG_SHARED_MEDIA,
    COUNTER_SLOTS, Counter, EndpointKey, FRAME_META_LEN, FrameMeta, MAX_FRAME, MAX_RINGS,
    MEDIA_ENDPOINTS_MAX_ENTRIES, RING_BYTES, RING_BYTES_UNUSED, RING_STAT_KINDS, RING_STAT_LOST,
    RING_STAT_WRITTEN, SHARED_MEDIA_MAX_ENTRIES, SHARED_PORT_WORDS, SIP_PORTS_MAX_ENTRIES,
    TUNNEL_KINDS, Tunnel, XdpConfig, steer_hash, steer_ring, steer_ring_pair,
};
use voxtap_engine::parallel::Owners;

pub use debug_log::{XdpDebug, XdpDebugLog};

/// The XDP object built by `capture/sensor/build.rs`.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("VOXTAP_EBPF_OBJ"));
/// The same program with aya-log debug records (capture-ebpf's `log`
/// feature), loaded for [`XdpDebug::On`] and [`XdpDebug::Silent`].
static XDP_DEBUG_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("VOXTAP_EBPF_DEBUG_OBJ"));

/// Name of the XDP program in the object.
pub(crate) const PROGRAM_NAME: &str = "voxtap_xdp";

/// Names of the ring buffers in the object, by ring index.
const RING_NAMES: [&str; MAX_RINGS as usize] = [
    "FRAMES_0", "FRAMES_1", "FRAMES_2", "FRAMES_3", "FRAMES_4", "FRAMES_5", "FRAMES_6", "FRAMES_7",
];

/// Number of counter slots, as an array length.
pub const COUNTERS: usize = COUNTER_SLOTS as usize;
/// Number of tunnel kinds, as an array length.
pub const TUNNELS: usize = TUNNEL_KINDS as usize;

/// Errors of the XDP sensor (aya's errors are boxed: they are large).
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP object: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("XDP program: {0}")]
    Program(Box<ProgramError>),
    #[error("BPF map: {0}")]
    Map(Box<MapError>),
    #[error("the XDP object has no map or program named {0}")]
    Missing(&'static str),
    #[error("XDP debug log: {0}")]
    DebugLog(Box<aya_log::Error>),
    #[error("{0} rings asked for; the program was loaded with {1} (at most {MAX_RINGS})")]
    Rings(u32, u32),
    #[error(
        "{0} shared media endpoints: the kernel's map holds at most {SHARED_MEDIA_MAX_ENTRIES}"
    )]
    SharedMedia(usize),
    #[error("the sensor is already attached to {0}")]
    AlreadyAttached(String),
    #[error("attaching to {iface} failed in native mode ({native}) and in SKB mode ({skb})")]
    Attach {
        iface: String,
        native: Box<ProgramError>,
        skb: Box<ProgramError>,
    },
}

impl From<aya::EbpfError> for XdpError {
    fn from(e: aya::EbpfError) -> Self {
        XdpError::Load(Box::new(e))
    }
}

impl From<ProgramError> for XdpError {
    fn from(e: ProgramError) -> Self {
        XdpError::Program(Box::new(e))
    }
}

impl From<MapError> for XdpError {
    fn from(e: MapError) -> Self {
        XdpError::Map(Box::new(e))
    }
}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodEndpoint(EndpointKey);
// SAFETY: repr(C), 20 bytes of integers, no padding.
unsafe impl Pod for PodEndpoint {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodConfig(XdpConfig);
// SAFETY: repr(C), two u32, four u16, one u32: 20 bytes, no padding.
unsafe impl Pod for PodConfig {}

/// Sizes of the maps chosen at load time (the object's own sizes are the
/// defaults). The number of rings is `XdpConfig::rings`; the rings beyond it
/// are shrunk to [`RING_BYTES_UNUSED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// Each `FRAMES_<i>` ring buffer in use, in bytes: a power of two,
    /// multiple of the page size.
    pub ring_bytes: u32,
    /// Entries of `MEDIA_ENDPOINTS` (RTP/RTCP endpoints from SDP, about 4
    /// per call).
    pub media_endpoints: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            ring_bytes: RING_BYTES,
            media_endpoints: MEDIA_ENDPOINTS_MAX_ENTRIES,
        }
    }
}

/// Size of the loaded program, after the verifier (0: not reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramSize {
    /// Instructions the kernel kept (8 bytes each): dead code removed.
    pub translated_bytes: u32,
    /// Native code.
    pub jited_bytes: u32,
    /// Instructions the verifier walked (all paths, kernel 5.16+).
    pub verified_insns: u32,
}

/// How the program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) XDP.
    Native,
    /// Generic XDP in the kernel stack (fallback).
    Skb,
}

/// The loaded XDP classifier. Detaches from its interface when dropped.
pub struct XdpSensor {
    // Field order matters for Drop: maps before the Ebpf that owns the program.
    config: Array<MapData, PodConfig>,
    sip_ports: HashMap<MapData, u16, u8>,
    /// The shared endpoints' maps, filled at load.
    shared: SharedMedia,
    /// `None` once moved to the pipeline worker ([`Self::take_endpoint_map`]).
    media: Option<EndpointMap>,
    counters: PerCpuArray<MapData, u64>,
    tunnels: PerCpuArray<MapData, u64>,
    ring_stats: PerCpuArray<MapData, u64>,
    /// Rings in use (`XdpConfig::rings` at load, at least 1).
    rings: u32,
    /// One reader per ring in use, by ring index; each `None` once taken.
    frames: Vec<Option<FrameReader>>,
    /// `Some` when loaded with [`XdpDebug::On`], until taken.
    debug_log: Option<XdpDebugLog>,
    attached: Option<(String, AttachMode, XdpLinkId)>,
    ebpf: Ebpf,
}

impl XdpSensor {
    /// Loads the program into the kernel (not attached yet) with `config` and
    /// the SIP ports (e.g. `[5060, 5080]`). Needs CAP_BPF + CAP_NET_ADMIN.
    pub fn load(config: XdpConfig, sip_ports: &[u16]) -> Result<Self, XdpError> {
        Self::load_sized(config, sip_ports, MapSizes::default())
    }

    /// As [`Self::load`], with the ring buffer and the endpoint map sized by
    /// `sizes`.
    pub fn load_sized(
        config: XdpConfig,
        sip_ports: &[u16],
        sizes: MapSizes,
    ) -> Result<Self, XdpError> {
        Self::load_debug(config, sip_ports, &[], sizes, XdpDebug::Off)
    }

    /// As [`Self::load_sized`], with the shared media endpoints
    /// (`workers.shared_media`: media to them is steered over the media
    /// rings by both ends, [`steer_ring_pair`]), choosing the object and its
    /// log level with `debug`; with [`XdpDebug::On`], read the records
    /// through [`Self::take_debug_log`].
    pub fn load_debug(
        config: XdpConfig,
        sip_ports: &[u16],
        shared_media: &[SocketAddr],
        sizes: MapSizes,
        debug: XdpDebug,
    ) -> Result<Self, XdpError> {
        raise_memlock_limit();
        let rings = config.rings.max(1);
        if rings > MAX_RINGS {
            return Err(XdpError::Rings(rings, MAX_RINGS));
        }
        if shared_media.len() > SHARED_MEDIA_MAX_ENTRIES as usize {
            return Err(XdpError::SharedMedia(shared_media.len()));
        }
        let mut loader = aya::EbpfLoader::new();
        for (i, name) in RING_NAMES.iter().enumerate() {
            // Unused rings still exist in the object: one page each.
            let bytes = match (i as u32) < rings {
                true => sizes.ring_bytes,
                false => RING_BYTES_UNUSED,
            };
            loader.map_max_entries(name, bytes);
        }
        loader.map_max_entries("MEDIA_ENDPOINTS", sizes.media_endpoints);
        let level = debug.log_level();
        if let Some(level) = &level {
            // A read-only global: the verifier sees the constant.
            loader.override_global(aya_log::LEVEL, level, true);
        }
        let object = match level {
            None => XDP_OBJECT,
            Some(_) => XDP_DEBUG_OBJECT,
        };
        let mut ebpf = loader.load(object)?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(XdpError::Missing(name));
        let config_map = Array::try_from(take("CONFIG")?)?;
        let sip = HashMap::try_from(take("SIP_PORTS")?)?;
        let shared = SharedMedia::fill(
            HashMap::try_from(take("SHARED_MEDIA")?)?,
            Array::try_from(take("SHARED_PORTS")?)?,
            shared_media,
        )?;
        let media = HashMap::try_from(take("MEDIA_ENDPOINTS")?)?;
        let counters = PerCpuArray::try_from(take("COUNTERS")?)?;
        let tunnels = PerCpuArray::try_from(take("TUNNELS")?)?;
        let ring_stats = PerCpuArray::try_from(take("RING_STATS")?)?;
        let mut frames = Vec::with_capacity(rings as usize);
        for (i, name) in RING_NAMES.iter().take(rings as usize).enumerate() {
            let ring = RingBuf::try_from(take(name)?)?;
            frames.push(Some(FrameReader {
                ring,
                index: i as u32,
            }));
        }
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(XdpError::Missing(PROGRAM_NAME))?
            .try_into()?;
        program.load()?;
        let debug_log = match debug {
            XdpDebug::On => Some(XdpDebugLog::init(&mut ebpf)?),
            _ => None,
        };
        let mut sensor = XdpSensor {
            config: config_map,
            sip_ports: sip,
            shared,
            media: Some(EndpointMap {
                map: media,
                max_entries: sizes.media_endpoints,
            }),
            counters,
            tunnels,
            ring_stats,
            rings,
            frames,
            debug_log,
            attached: None,
            ebpf,
        };
        sensor.set_config(config)?;
        for &p in sip_ports {
            sensor.add_sip_port(p)?;
        }
        Ok(sensor)
    }

    /// Replaces the configuration (takes effect on the next frame). Its
    /// `rings` may not exceed the rings the program was loaded with;
    /// [`CFG_SHARED_MEDIA`] follows the shared list given at load, whatever
    /// `config` says.
    pub fn set_config(&mut self, mut config: XdpConfig) -> Result<(), XdpError> {
        if config.rings > self.rings {
            return Err(XdpError::Rings(config.rings, self.rings));
        }
        config.flags &= !CFG_SHARED_MEDIA;
        if self.shared.any {
            config.flags |= CFG_SHARED_MEDIA;
        }
        self.config.set(0, PodConfig(config), 0)?;
        Ok(())
    }

    /// Current configuration.
    pub fn config(&self) -> Result<XdpConfig, XdpError> {
        Ok(self.config.get(&0, 0)?.0)
    }

    pub fn add_sip_port(&mut self, port: u16) -> Result<(), XdpError> {
        self.sip_ports.insert(port, 1, 0)?;
        Ok(())
    }

    pub fn remove_sip_port(&mut self, port: u16) -> Result<(), XdpError> {
        ignore_missing(self.sip_ports.remove(&port))
    }

    /// Keeps UDP frames from or to this endpoint (from an SDP `c=`/`m=` pair;
    /// add the RTCP port too). IPv4 and IPv4-mapped IPv6 are the same key.
    pub fn add_endpoint(&mut self, ep: SocketAddr) -> Result<(), XdpError> {
        self.media
            .as_mut()
            .ok_or(XdpError::Missing("MEDIA_ENDPOINTS (moved out)"))?
            .add(ep)
    }

    /// Stops keeping this endpoint; removing an absent endpoint is not an error.
    pub fn remove_endpoint(&mut self, ep: SocketAddr) -> Result<(), XdpError> {
        self.media
            .as_mut()
            .ok_or(XdpError::Missing("MEDIA_ENDPOINTS (moved out)"))?
            .remove(ep)
    }

    /// Whether the kernel steers media to `ep` by both ends (a shared
    /// endpoint given at load; its RTP and RTCP ports are one entry).
    pub fn is_shared_media(&self, ep: SocketAddr) -> bool {
        self.shared.contains(ep)
    }

    /// The media endpoint map, to move to the thread that follows the calls
    /// (the pipeline worker). `None` once taken.
    pub fn take_endpoint_map(&mut self) -> Option<EndpointMap> {
        self.media.take()
    }

    /// Attaches in native mode, falling back to SKB (generic) mode with a
    /// warning.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        self.attach_inner(iface, None)
    }

    /// Attaches in exactly this mode (no fallback).
    pub fn attach_mode(&mut self, iface: &str, mode: AttachMode) -> Result<AttachMode, XdpError> {
        self.attach_inner(iface, Some(mode))
    }

    fn attach_inner(
        &mut self,
        iface: &str,
        only: Option<AttachMode>,
    ) -> Result<AttachMode, XdpError> {
        if let Some((name, _, _)) = &self.attached {
            return Err(XdpError::AlreadyAttached(name.clone()));
        }
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(XdpError::Missing(PROGRAM_NAME))?
            .try_into()?;
        let (mode, link) = match only {
            Some(AttachMode::Native) => {
                (AttachMode::Native, program.attach(iface, XdpMode::Driver)?)
            }
            Some(AttachMode::Skb) => (AttachMode::Skb, program.attach(iface, XdpMode::Skb)?),
            None => match program.attach(iface, XdpMode::Driver) {
                Ok(link) => (AttachMode::Native, link),
                Err(native) => {
                    tracing::warn!(
                        iface,
                        error = %native,
                        "native XDP attach failed, falling back to SKB (generic) mode: slower"
                    );
                    match program.attach(iface, XdpMode::Skb) {
                        Ok(link) => (AttachMode::Skb, link),
                        Err(skb) => {
                            return Err(XdpError::Attach {
                                iface: iface.to_owned(),
                                native: Box::new(native),
                                skb: Box::new(skb),
                            });
                        }
                    }
                }
            },
        };
        tracing::info!(iface, ?mode, "XDP classifier attached");
        self.attached = Some((iface.to_owned(), mode, link));
        Ok(mode)
    }

    /// Interface and mode, when attached.
    pub fn attached(&self) -> Option<(&str, AttachMode)> {
        self.attached.as_ref().map(|(i, m, _)| (i.as_str(), *m))
    }

    /// Detaches from the interface (also done on drop).
    pub fn detach(&mut self) -> Result<(), XdpError> {
        if let Some((iface, _, link)) = self.attached.take() {
            let program: &mut Xdp = self
                .ebpf
                .program_mut(PROGRAM_NAME)
                .ok_or(XdpError::Missing(PROGRAM_NAME))?
                .try_into()?;
            program.detach(link)?;
            tracing::info!(iface, "XDP classifier detached");
        }
        Ok(())
    }

    /// Counters summed over CPUs, indexed by [`Counter`]. A failed map read
    /// (not expected) is logged and reads as 0; see [`Self::try_counters`].
    pub fn counters(&self) -> [u64; COUNTERS] {
        self.try_counters().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading XDP counters failed");
            [0; COUNTERS]
        })
    }

    pub fn try_counters(&self) -> Result<[u64; COUNTERS], XdpError> {
        let mut out = [0u64; COUNTERS];
        for (slot, v) in out.iter_mut().enumerate() {
            let per_cpu = self.counters.get(&(slot as u32), 0)?;
            *v = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// Frames per kind of encapsulation, summed over CPUs, indexed by
    /// [`Tunnel`]. A failed map read (not expected) is logged and reads as 0.
    pub fn tunnel_counters(&self) -> [u64; TUNNELS] {
        let mut out = [0u64; TUNNELS];
        for (slot, v) in out.iter_mut().enumerate() {
            match self.tunnels.get(&(slot as u32), 0) {
                Ok(per_cpu) => *v = per_cpu.iter().sum(),
                Err(e) => tracing::warn!(error = %e, "reading XDP tunnel counters failed"),
            }
        }
        out
    }

    /// Frames written to and lost on each ring in use, summed over CPUs,
    /// by ring index. A failed map read (not expected) is logged and reads
    /// as 0.
    pub fn ring_counters(&self) -> Vec<RingCounters> {
        (0..self.rings)
            .map(|ring| {
                let slot =
                    |kind: u32| match self.ring_stats.get(&(ring * RING_STAT_KINDS + kind), 0) {
                        Ok(per_cpu) => per_cpu.iter().sum(),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading XDP ring counters failed");
                            0
                        }
                    };
                RingCounters {
                    written: slot(RING_STAT_WRITTEN),
                    lost: slot(RING_STAT_LOST),
                }
            })
            .collect()
    }

    /// Rings in use.
    pub fn rings(&self) -> u32 {
        self.rings
    }

    /// Ring 0's reader (the only ring with `rings = 1`), to move to the
    /// reading thread. `None` once taken.
    pub fn take_frame_reader(&mut self) -> Option<FrameReader> {
        self.frames.first_mut().and_then(Option::take)
    }

    /// The reader of every ring in use not taken yet, by ring index.
    pub fn take_frame_readers(&mut self) -> Vec<FrameReader> {
        self.frames.iter_mut().filter_map(Option::take).collect()
    }

    /// The program's debug records ([`XdpDebug::On`]), to move to the
    /// thread that prints them. `None` without debug logging or once taken.
    pub fn take_debug_log(&mut self) -> Option<XdpDebugLog> {
        self.debug_log.take()
    }

    /// The loaded program as the kernel reports it (`bpftool prog show`).
    pub fn program_size(&self) -> Result<ProgramSize, XdpError> {
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(XdpError::Missing(PROGRAM_NAME))?
            .try_into()?;
        let info = program.info()?;
        Ok(ProgramSize {
            translated_bytes: info.size_translated().unwrap_or(0),
            jited_bytes: info.size_jitted(),
            verified_insns: info.verified_instruction_count().unwrap_or(0),
        })
    }

    /// The program's file descriptor (for `BPF_PROG_TEST_RUN` in the
    /// benchmarks).
    pub fn program_fd(&self) -> Result<BorrowedFd<'_>, XdpError> {
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(XdpError::Missing(PROGRAM_NAME))?
            .try_into()?;
        Ok(program.fd()?.as_fd())
    }
}

impl Drop for XdpSensor {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            tracing::warn!(error = %e, "detaching the XDP classifier failed");
        }
    }
}

/// The program's maps of shared endpoints (kept open: the program refers
/// to them): `SHARED_MEDIA`, each under its folded key
/// ([`EndpointKey::shared`], as `parallel::Owners` folds them), and the
/// bits of their folded ports in `SHARED_PORTS`.
struct SharedMedia {
    endpoints: HashMap<MapData, PodEndpoint, u8>,
    ports: Array<MapData, u64>,
    /// Whether any is listed: [`CFG_SHARED_MEDIA`] is then set in every
    /// configuration written.
    any: bool,
}

impl SharedMedia {
    fn fill(
        mut endpoints: HashMap<MapData, PodEndpoint, u8>,
        mut ports: Array<MapData, u64>,
        shared: &[SocketAddr],
    ) -> Result<Self, XdpError> {
        let mut bits = vec![0u64; SHARED_PORT_WORDS as usize];
        for &ep in shared {
            let k = endpoint_key(ep);
            let key = EndpointKey::shared(k.addr, k.port);
            endpoints.insert(PodEndpoint(key), 1, 0)?;
            bits[usize::from(key.port / 64)] |= 1 << (key.port % 64);
        }
        for (i, &word) in bits.iter().enumerate().filter(|(_, w)| **w != 0) {
            ports.set(i as u32, word, 0)?;
        }
        let any = !shared.is_empty();
        Ok(SharedMedia {
            endpoints,
            ports,
            any,
        })
    }

    /// As the program tests it: the port's bit, then the endpoint.
    fn contains(&self, ep: SocketAddr) -> bool {
        let k = endpoint_key(ep);
        let key = EndpointKey::shared(k.addr, k.port);
        let bits = self.ports.get(&u32::from(key.port / 64), 0).unwrap_or(0);
        bits & (1 << (key.port % 64)) != 0 && self.endpoints.get(&PodEndpoint(key), 0).is_ok()
    }
}

fn ignore_missing(r: Result<(), MapError>) -> Result<(), XdpError> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The `MEDIA_ENDPOINTS` map: the RTP/RTCP endpoints the kernel keeps. Each
/// update is one bpf(2) call on the map's fd, which needs no capability
/// once the map is open.
pub struct EndpointMap {
    map: HashMap<MapData, PodEndpoint, u8>,
    max_entries: u32,
}

impl EndpointMap {
    /// Fails when the map is full (`E2BIG`): the kernel then keeps this
    /// endpoint's frames only through the RTP heuristic, if enabled.
    pub fn add(&mut self, ep: SocketAddr) -> Result<(), XdpError> {
        self.map.insert(PodEndpoint(endpoint_key(ep)), 1, 0)?;
        Ok(())
    }

    /// Removing an absent endpoint is not an error.
    pub fn remove(&mut self, ep: SocketAddr) -> Result<(), XdpError> {
        ignore_missing(self.map.remove(&PodEndpoint(endpoint_key(ep))))
    }

    /// Capacity the map was created with.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Whether the kernel keeps this endpoint now.
    pub fn contains(&self, ep: SocketAddr) -> bool {
        self.map.get(&PodEndpoint(endpoint_key(ep)), 0).is_ok()
    }
}

/// Map key of an endpoint: IPv4 as IPv4-mapped IPv6, port in host order.
pub(crate) fn endpoint_key(ep: SocketAddr) -> EndpointKey {
    match ep.ip() {
        IpAddr::V4(v4) => EndpointKey::from_v4(v4.octets(), ep.port()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => EndpointKey::from_v4(v4.octets(), ep.port()),
            None => EndpointKey::new(v6.octets(), ep.port()),
        },
    }
}

/// One ring's kernel counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Frames written to the ring.
    pub written: u64,
    /// Frames kept for the ring but lost: it was full.
    pub lost: u64,
}

/// The XDP program's ring rule in userspace, with its shared list: which
/// media ring a frame may be on. Media ring `1 + k` holds what media worker
/// `k` of `rings - 1` owns under [`Owners`]; a shared endpoint's streams
/// are spread over every media ring.
#[derive(Clone, Debug)]
pub struct RingRule {
    rings: u32,
    owners: Owners,
}

impl RingRule {
    /// `rings` rings (1 or a value out of range: everything on ring 0) and
    /// the shared endpoints loaded into the program.
    pub fn new(rings: u32, shared: &[SocketAddr]) -> Self {
        let rings = if rings > MAX_RINGS { 1 } else { rings.max(1) };
        let media_rings = (rings - 1).max(1) as usize;
        RingRule {
            rings,
            owners: Owners::new(shared, media_rings),
        }
    }

    pub fn rings(&self) -> u32 {
        self.rings
    }

    /// The ring of a media frame from `src` to `dst`.
    pub fn ring(&self, src: SocketAddr, dst: SocketAddr) -> u32 {
        match self.rings {
            1 => 0,
            _ => 1 + self.owners.owner(src, dst) as u32,
        }
    }

    /// Whether frames sent to `ep` may have been on ring `ring`: ring 0
    /// may carry anything, a media ring its destinations' frames and any
    /// shared endpoint's.
    pub fn may_carry(&self, ep: SocketAddr, ring: u32) -> bool {
        ring == 0 || self.rings == 1 || self.owners.may_own(ep, ring as usize - 1)
    }
}

/// Reads the frames the classifier keeps in one ring. Zero-copy: each frame
/// is borrowed from the shared ring and released as soon as the callback
/// returns.
pub struct FrameReader {
    ring: RingBuf<MapData>,
    index: u32,
}

/// One record of the ring, borrowed until dropped.
pub struct Frame<'a> {
    item: RingBufItem<'a>,
}

impl Frame<'_> {
    /// The header written by the XDP program (all zero for a record too short
    /// to hold one, which the program never writes).
    pub fn meta(&self) -> FrameMeta {
        if self.item.len() < FRAME_META_LEN {
            return FrameMeta {
                ktime_ns: 0,
                wire_len: 0,
                cap_len: 0,
                queue: 0,
                reason: 0,
            };
        }
        // SAFETY: at least FRAME_META_LEN bytes; FrameMeta is plain integers,
        // read unaligned.
        unsafe { std::ptr::read_unaligned(self.item.as_ptr().cast::<FrameMeta>()) }
    }

    /// The frame bytes (at most `cap_len`, starting at the Ethernet header).
    pub fn data(&self) -> &[u8] {
        let rest = self.item.get(FRAME_META_LEN..).unwrap_or(&[]);
        let cap = (self.meta().cap_len as usize).min(rest.len());
        &rest[..cap]
    }
}

impl FrameReader {
    /// Index of the ring this reader reads.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Next record without waiting, or `None` when the ring is empty.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        self.ring.next().map(|item| Frame { item })
    }

    /// Waits until the kernel signals data or `timeout` passes. The program
    /// wakes readers lazily (every `wakeup_every` frames), so callers must
    /// drain after a timeout too, as [`Self::poll`] does.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        wait_readable(self.ring.as_fd(), timeout)
    }

    /// Hands every available frame to `f`; when none is available, waits up to
    /// `timeout` and drains again. Returns the number of frames handled. No
    /// allocation per frame.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(FrameMeta, &[u8]),
    ) -> io::Result<usize> {
        let mut n = self.drain(&mut f);
        if n == 0 {
            self.wait(timeout)?;
            n = self.drain(&mut f);
        }
        Ok(n)
    }

    fn drain(&mut self, f: &mut impl FnMut(FrameMeta, &[u8])) -> usize {
        let mut n = 0;
        while let Some(frame) = self.next_frame() {
            f(frame.meta(), frame.data());
            n += 1;
        }
        n
    }
}

/// Waits until `fd` is readable or `timeout` passes (`Ok(false)`).
fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; the 64 MiB ring
/// needs more than the usual default.
fn raise_memlock_limit() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot raise RLIMIT_MEMLOCK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The userspace rule gives the ring the program computes from the
    /// map keys: by both ends to a shared endpoint, by destination else.
    #[test]
    fn ring_rule_is_the_programs() {
        let server = ep("192.0.2.10:5004");
        let rule = RingRule::new(4, &[ep("192.0.2.10:5005")]);
        let d = endpoint_key(server);
        let mut seen = [0u32; 4];
        for i in 0..200u16 {
            let src = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 30_000 + 2 * i));
            let s = endpoint_key(src);
            let ring = rule.ring(src, server);
            assert_eq!(ring, steer_ring_pair(&s.addr, s.port, &d.addr, d.port, 4));
            seen[ring as usize] += 1;
            let other = SocketAddr::from(([198, 51, 100, (i % 200) as u8], 4000 + 2 * i));
            let o = endpoint_key(other);
            assert_eq!(rule.ring(src, other), steer_ring(&o.addr, o.port, 4));
            // A media ring's loss concerns `other` only on its own ring.
            let r = rule.ring(src, other);
            assert!((1..4).all(|k| rule.may_carry(other, k) == (k == r)));
        }
        assert!(seen[0] == 0 && seen[1..].iter().all(|&n| n > 0), "{seen:?}");
        // The shared endpoint (RTP and RTCP port) may be on any ring.
        for p in [5004, 5005] {
            let s = SocketAddr::new(server.ip(), p);
            assert!((0..4).all(|k| rule.may_carry(s, k)));
        }
        // One ring: everything on ring 0.
        assert_eq!(
            RingRule::new(1, &[server]).ring(ep("10.0.0.1:4000"), server),
            0
        );
    }
}
