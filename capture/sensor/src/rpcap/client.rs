//! The RPCAP client: one control connection to rpcapd (authenticate, list
//! interfaces, open, start/stop a capture, filter, statistics) and the data
//! channel the captured packets arrive on (TCP or UDP). Every read has a
//! deadline, and every server error becomes a message that says what failed.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::bpf::{self, FilterError};
use super::tls::{Conn, TlsCtx, TlsError, TlsSettings};
use voxtap_proto::rpcap::{
    AuthReply, Credentials, HEADER_LEN, Header, Interface, MSG_CLOSE, MSG_ENDCAP_REQ, MSG_ERROR,
    MSG_FINDALLIF_REQ, MSG_IS_REPLY, MSG_OPEN_REQ, MSG_PACKET, MSG_STARTCAP_REQ, MSG_STATS_REQ,
    MSG_UPDATEFILTER_REQ, OpenReply, Packet, ProtoError, STARTCAP_FLAG_DGRAM,
    STARTCAP_FLAG_PROMISC, StartCap, Stats,
};

#[derive(Debug, Error)]
pub enum RpcapError {
    #[error("cannot resolve rpcapd address '{addr}': {reason}")]
    Resolve { addr: String, reason: String },
    #[error("cannot connect to rpcapd at {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("rpcapd at {addr}: no answer within {timeout:?} while waiting for {what}")]
    Timeout {
        addr: String,
        what: &'static str,
        timeout: Duration,
    },
    #[error("rpcapd at {addr} closed the connection while we waited for {what}")]
    Closed { addr: String, what: &'static str },
    #[error("rpcapd at {addr}: {what}: {source}")]
    Io {
        addr: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("rpcapd at {addr} sent a malformed message ({what}): {source}")]
    Protocol {
        addr: String,
        what: &'static str,
        source: ProtoError,
    },
    #[error(
        "rpcapd at {addr} rejected the username/password of user '{user}' (wrong password or unknown user): {message}"
    )]
    AuthFailed {
        addr: String,
        user: String,
        message: String,
    },
    #[error(
        "rpcapd at {addr} refuses null authentication (it runs without -n): give a username and password: {message}"
    )]
    NullAuthRefused { addr: String, message: String },
    #[error("rpcapd at {addr} has no interface '{iface}': {message}")]
    UnknownInterface {
        addr: String,
        iface: String,
        message: String,
    },
    #[error("rpcapd at {addr}: {what} failed: {message} ({code_name}, code {code})")]
    Server {
        addr: String,
        what: String,
        code: u16,
        code_name: &'static str,
        message: String,
    },
    #[error("rpcapd at {addr}: {what} needs an open interface; call open() first")]
    NotOpen { addr: String, what: &'static str },
    #[error("rpcapd at {addr}: {source}")]
    Filter { addr: String, source: FilterError },
    #[error("rpcapd at {addr}: TLS setup: {source}")]
    TlsSetup { addr: String, source: TlsError },
    #[error("TLS handshake with rpcapd at {addr} ({what}) failed: {reason}")]
    TlsRefused {
        addr: String,
        what: &'static str,
        reason: String,
    },
    #[error(
        "rpcapd at {addr}: the UDP data channel cannot be used with TLS (rpcapd -S refuses it: it has no DTLS); use the TCP data channel"
    )]
    TlsUdp { addr: String },
    #[error(
        "rpcapd at {addr} requires TLS (it runs with -S): connect with rpcaps (tls = true in the hosts file, or --tls): {message}"
    )]
    TlsRequired { addr: String, message: String },
}

impl RpcapError {
    /// Errors that a new connection will not fix (wrong password, unknown
    /// interface, bad filter): reconnecting on them only hammers the server.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RpcapError::AuthFailed { .. }
                | RpcapError::NullAuthRefused { .. }
                | RpcapError::UnknownInterface { .. }
                | RpcapError::Filter { .. }
                | RpcapError::Resolve { .. }
                | RpcapError::TlsSetup { .. }
                | RpcapError::TlsRefused { .. }
                | RpcapError::TlsUdp { .. }
                | RpcapError::TlsRequired { .. }
        )
    }
}

/// Where and how to reach one rpcapd.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port`.
    pub addr: String,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// Longest wait for any control reply.
    pub reply_timeout: Duration,
    /// `rpcaps`: TLS on the control and data connections.
    pub tls: Option<TlsSettings>,
}

impl ClientConfig {
    pub fn new(addr: impl Into<String>) -> Self {
        ClientConfig {
            addr: addr.into(),
            credentials: Credentials::Null,
            connect_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// How captured packets travel from rpcapd to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// rpcapd listens on a port it names; we connect. Lossless.
    Tcp,
    /// rpcapd sends one datagram per packet to a port we name. Lighter on
    /// the remote host; losses show as gaps in rpcapd's packet numbers.
    Udp,
}

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub transport: Transport,
    /// tcpdump filter language; compiled here, applied by rpcapd. Our own
    /// RPCAP traffic is always excluded on top of it.
    pub filter: String,
    pub snaplen: u32,
    pub promisc: bool,
    /// How long the data channel's `next_packet` blocks before returning
    /// `None`, so the caller can look at its clock and stop flag.
    pub poll: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            transport: Transport::Tcp,
            filter: "udp".into(),
            snaplen: 65535,
            promisc: false,
            poll: Duration::from_millis(200),
        }
    }
}

/// One authenticated control connection.
pub struct Session {
    ctrl: Conn,
    /// Kept for the data channel, which gets its own handshake.
    tls: Option<TlsCtx>,
    addr: String,
    local: SocketAddr,
    peer: SocketAddr,
    reply_timeout: Duration,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    open: Option<(String, OpenReply)>,
    snaplen: u32,
    /// Filter text that keeps our own control and data traffic out of the
    /// capture (it would otherwise capture itself, endlessly, with `udp`
    /// over a UDP data channel).
    exclude: String,
    credentials_user: Option<String>,
    pub server: AuthReply,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The control connection: the first of `cfg.addr`'s addresses that
/// accepts.
fn connect_control(cfg: &ClientConfig) -> Result<TcpStream, RpcapError> {
    let addrs: Vec<SocketAddr> = cfg
        .addr
        .to_socket_addrs()
        .map_err(|e| RpcapError::Resolve {
            addr: cfg.addr.clone(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, cfg.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(RpcapError::Connect {
        addr: cfg.addr.clone(),
        source: last.unwrap_or_else(|| io::Error::other("no address")),
    })
}

/// Maps an I/O error of `what` with rpcapd at `addr`.
fn io_err(addr: &str, what: &'static str) -> impl FnOnce(io::Error) -> RpcapError {
    let addr = addr.to_string();
    move |source| RpcapError::Io { addr, what, source }
}

impl Session {
    /// Connects and authenticates.
    pub fn connect(cfg: &ClientConfig) -> Result<Session, RpcapError> {
        let ctrl = connect_control(cfg)?;
        let io_err = |what| io_err(&cfg.addr, what);
        ctrl.set_nodelay(true)
            .map_err(io_err("setting TCP_NODELAY"))?;
        ctrl.set_write_timeout(Some(cfg.reply_timeout))
            .map_err(io_err("setting a write timeout"))?;
        let local = ctrl.local_addr().map_err(io_err("reading local address"))?;
        let peer = ctrl.peer_addr().map_err(io_err("reading peer address"))?;
        let (ctrl, tls) = match &cfg.tls {
            None => (Conn::Plain(ctrl), None),
            Some(settings) => {
                let ctx = TlsCtx::new(settings, &cfg.addr)?;
                let conn = ctx.handshake(ctrl, cfg.reply_timeout, "control connection")?;
                (conn, Some(ctx))
            }
        };
        let mut s = Session {
            ctrl,
            tls,
            addr: cfg.addr.clone(),
            local,
            peer,
            reply_timeout: cfg.reply_timeout,
            out: Vec::with_capacity(512),
            inbuf: Vec::with_capacity(4096),
            open: None,
            snaplen: 65535,
            exclude: String::new(),
            credentials_user: match &cfg.credentials {
                Credentials::Null => None,
                Credentials::Password { user, .. } => Some(user.clone()),
            },
            server: AuthReply {
                min_version: 0,
                max_version: 0,
                server_big_endian: None,
            },
        };
        s.out.clear();
        voxtap_proto::rpcap::encode_auth(&mut s.out, &cfg.credentials).map_err(|source| {
            RpcapError::Protocol {
                addr: cfg.addr.clone(),
                what: "authentication request",
                source,
            }
        })?;
        let (_, n) = s.request("authentication", MSG_AUTH_REPLY_TYPE)?;
        s.server = voxtap_proto::rpcap::parse_auth_reply(&s.inbuf[..n])
            .map_err(|e| s.proto_err("authentication reply", e))?;
        if s.server.min_version > voxtap_proto::rpcap::VERSION {
            return Err(s.proto_err(
                "authentication reply",
                ProtoError::Version(s.server.min_version),
            ));
        }
        tracing::debug!(addr = %s.addr, ?s.server, "authenticated");
        Ok(s)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn proto_err(&self, what: &'static str, source: ProtoError) -> RpcapError {
        RpcapError::Protocol {
            addr: self.addr.clone(),
            what,
            source,
        }
    }

    /// Reads exactly `buf.len()` bytes before `deadline`.
    fn read_full(
        &mut self,
        at: usize,
        len: usize,
        deadline: Instant,
        what: &'static str,
    ) -> Result<(), RpcapError> {
        let mut got = 0;
        while got < len {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RpcapError::Timeout {
                    addr: self.addr.clone(),
                    what,
                    timeout: self.reply_timeout,
                });
            }
            self.ctrl
                .set_read_timeout(Some(left))
                .map_err(|source| RpcapError::Io {
                    addr: self.addr.clone(),
                    what: "setting a read timeout",
                    source,
                })?;
            let Some(dst) = self.inbuf.get_mut(at + got..at + len) else {
                break;
            };
            match self.ctrl.read(dst) {
                Ok(0) => {
                    return Err(RpcapError::Closed {
                        addr: self.addr.clone(),
                        what,
                    });
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(source) => {
                    return Err(RpcapError::Io {
                        addr: self.addr.clone(),
                        what,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Sends `self.out` and reads the reply into `self.inbuf`; returns the
    /// header and the payload length. A server error becomes an error
    /// naming `what`.
    fn request(&mut self, what: &'static str, want: u8) -> Result<(Header, usize), RpcapError> {
        self.ctrl
            .write_all(&self.out)
            // Over TLS the records may still sit in rustls's buffer.
            .and_then(|()| self.ctrl.flush())
            .map_err(|source| RpcapError::Io {
                addr: self.addr.clone(),
                what,
                source,
            })?;
        if want == 0 {
            return Ok((Header::new(0, 0, 0), 0));
        }
        let deadline = Instant::now() + self.reply_timeout;
        self.inbuf.resize(HEADER_LEN, 0);
        self.read_full(0, HEADER_LEN, deadline, what)?;
        let h = Header::parse(&self.inbuf).map_err(|e| self.proto_err(what, e))?;
        let n = h.plen as usize;
        self.inbuf.resize(n, 0);
        self.read_full(0, n, deadline, what)?;
        if h.msg_type == MSG_ERROR {
            return Err(self.server_error(what, h.value, n));
        }
        if h.msg_type != want {
            return Err(self.proto_err(
                what,
                ProtoError::Unexpected {
                    want,
                    got: h.msg_type,
                },
            ));
        }
        Ok((h, n))
    }

    fn server_error(&self, what: &'static str, code: u16, n: usize) -> RpcapError {
        let e = voxtap_proto::rpcap::parse_error(code, self.inbuf.get(..n).unwrap_or(&[]));
        let addr = self.addr.clone();
        match (what, code) {
            (_, 19) => RpcapError::TlsRequired {
                addr,
                message: e.message,
            },
            ("authentication", 3 | 18 | 20) => match &self.credentials_user {
                Some(user) => RpcapError::AuthFailed {
                    addr,
                    user: user.clone(),
                    message: e.message,
                },
                None => RpcapError::NullAuthRefused {
                    addr,
                    message: e.message,
                },
            },
            _ => RpcapError::Server {
                addr,
                what: what.to_string(),
                code,
                code_name: voxtap_proto::rpcap::error_code_name(code),
                message: e.message,
            },
        }
    }

    /// The server's interfaces (`pcap_findalldevs` on the remote host).
    pub fn list_interfaces(&mut self) -> Result<Vec<Interface>, RpcapError> {
        self.out.clear();
        voxtap_proto::rpcap::encode_simple(&mut self.out, MSG_FINDALLIF_REQ);
        let (h, n) = self.request("listing interfaces", MSG_FINDALLIF_REQ | MSG_IS_REPLY)?;
        voxtap_proto::rpcap::parse_findalldevs(h.value, &self.inbuf[..n])
            .map_err(|e| self.proto_err("interface list", e))
    }

    /// Opens `iface` on the server; returns its link type.
    pub fn open(&mut self, iface: &str) -> Result<OpenReply, RpcapError> {
        self.out.clear();
        voxtap_proto::rpcap::encode_open(&mut self.out, iface)
            .map_err(|e| self.proto_err("open request", e))?;
        let n = match self.request("opening the interface", MSG_OPEN_REQ | MSG_IS_REPLY) {
            Ok((_, n)) => n,
            Err(RpcapError::Server {
                addr,
                code,
                message,
                code_name,
                ..
            }) => {
                // rpcapd reports every open failure with code 6; the text is
                // pcap_open_live's, which says when the device does not exist.
                return Err(if message.contains("No such device") {
                    RpcapError::UnknownInterface {
                        addr,
                        iface: iface.to_string(),
                        message,
                    }
                } else {
                    RpcapError::Server {
                        addr,
                        what: format!("opening interface '{iface}'"),
                        code,
                        code_name,
                        message,
                    }
                });
            }
            Err(e) => return Err(e),
        };
        let r = voxtap_proto::rpcap::parse_open_reply(&self.inbuf[..n])
            .map_err(|e| self.proto_err("open reply", e))?;
        self.open = Some((iface.to_string(), r));
        Ok(r)
    }

    fn compile(&self, user: &str) -> Result<Vec<voxtap_proto::rpcap::BpfInsn>, RpcapError> {
        let linktype = self.open.as_ref().map_or(1, |(_, r)| r.linktype);
        let user = user.trim();
        let expr = match (user.is_empty(), self.exclude.is_empty()) {
            (true, _) => self.exclude.clone(),
            (false, true) => user.to_string(),
            (false, false) => format!("({user}) and {}", self.exclude),
        };
        bpf::compile(&expr, linktype, self.snaplen).map_err(|source| RpcapError::Filter {
            addr: self.addr.clone(),
            source,
        })
    }

    fn exclude_ports(&mut self, proto_kw: &str, a: u16, b: Option<u16>) {
        let (l, p) = (self.local.ip(), self.peer.ip());
        let ports = match b {
            Some(b) => format!("port {a} and {proto_kw}port {b}"),
            None => format!("port {a}"),
        };
        let clause = format!("not (host {l} and host {p} and {proto_kw}{ports})");
        if self.exclude.is_empty() {
            self.exclude = clause;
        } else {
            self.exclude = format!("{} and {clause}", self.exclude);
        }
    }

    /// Starts capturing on the open interface and connects the data
    /// channel.
    pub fn start_capture(&mut self, opts: &CaptureOptions) -> Result<DataChannel, RpcapError> {
        if self.open.is_none() {
            return Err(RpcapError::NotOpen {
                addr: self.addr.clone(),
                what: "starting a capture",
            });
        }
        if self.tls.is_some() && opts.transport == Transport::Udp {
            return Err(RpcapError::TlsUdp {
                addr: self.addr.clone(),
            });
        }
        self.snaplen = opts.snaplen;
        self.exclude.clear();
        self.exclude_ports("tcp ", self.local.port(), Some(self.peer.port()));
        let udp = match opts.transport {
            Transport::Udp => Some(self.bind_udp_data()?),
            Transport::Tcp => None,
        };
        let insns = self.compile(&opts.filter)?;
        let mut flags = 0;
        if opts.promisc {
            flags |= STARTCAP_FLAG_PROMISC;
        }
        if udp.is_some() {
            flags |= STARTCAP_FLAG_DGRAM;
        }
        let req = StartCap {
            snaplen: opts.snaplen,
            // rpcapd's pcap read timeout: how long it may hold packets
            // before sending; short, so live counters stay live.
            read_timeout_ms: 100,
            flags,
            portdata: udp.as_ref().map_or(0, |(_, p)| *p),
        };
        self.out.clear();
        voxtap_proto::rpcap::encode_startcap(&mut self.out, &req, &insns)
            .map_err(|e| self.proto_err("start capture request", e))?;
        let (_, n) = self.request("starting the capture", MSG_STARTCAP_REQ | MSG_IS_REPLY)?;
        let reply = voxtap_proto::rpcap::parse_startcap_reply(&self.inbuf[..n])
            .map_err(|e| self.proto_err("start capture reply", e))?;
        let linktype = self.open.as_ref().map_or(1, |(_, r)| r.linktype);
        let kind = match udp {
            Some((sock, _)) => {
                sock.set_read_timeout(Some(opts.poll))
                    .map_err(io_err(&self.addr, "setting the UDP read timeout"))?;
                DataKind::Udp(sock)
            }
            None => DataKind::Tcp(self.connect_tcp_data(opts, reply.portdata)?),
        };
        tracing::info!(addr = %self.addr, iface = ?self.open.as_ref().map(|o| &o.0), transport = ?opts.transport, filter = %opts.filter, "capture started");
        Ok(DataChannel {
            kind,
            addr: self.addr.clone(),
            peer_ip: self.peer.ip(),
            buf: vec![0; 65536 + HEADER_LEN + voxtap_proto::rpcap::PKTHDR_LEN],
            filled: 0,
            linktype,
            last_npkt: 0,
            lost: 0,
        })
    }

    /// The UDP data socket (rpcapd sends to its port), excluded from the
    /// capture filter.
    fn bind_udp_data(&mut self) -> Result<(UdpSocket, u16), RpcapError> {
        let s = UdpSocket::bind(SocketAddr::new(self.local.ip(), 0))
            .map_err(io_err(&self.addr, "binding the UDP data socket"))?;
        let port = s
            .local_addr()
            .map_err(io_err(&self.addr, "reading the UDP data port"))?
            .port();
        self.exclude_ports("udp ", port, None);
        // A larger receive buffer rides out bursts while we write.
        Ok((s, port))
    }

    /// Connects the TCP data channel to rpcapd's `portdata` (TLS when the
    /// control connection is) and excludes it from the capture filter.
    fn connect_tcp_data(
        &mut self,
        opts: &CaptureOptions,
        portdata: u16,
    ) -> Result<Conn, RpcapError> {
        let data_addr = SocketAddr::new(self.peer.ip(), portdata);
        let s = TcpStream::connect_timeout(&data_addr, self.reply_timeout)
            .map_err(io_err(&self.addr, "connecting the TCP data channel"))?;
        let lport = s
            .local_addr()
            .map_err(io_err(&self.addr, "reading the data channel address"))?
            .port();
        let s = match &self.tls {
            None => Conn::Plain(s),
            Some(ctx) => ctx.handshake(s, self.reply_timeout, "data connection")?,
        };
        s.set_read_timeout(Some(opts.poll))
            .map_err(io_err(&self.addr, "setting the data read timeout"))?;
        self.exclude_ports("tcp ", lport, Some(portdata));
        // The data port was unknown when the start request carried the
        // filter: send it again with the data channel excluded.
        let insns = self.compile(&opts.filter)?;
        self.send_filter(&insns)?;
        Ok(s)
    }

    fn send_filter(&mut self, insns: &[voxtap_proto::rpcap::BpfInsn]) -> Result<(), RpcapError> {
        self.out.clear();
        voxtap_proto::rpcap::encode_update_filter(&mut self.out, insns)
            .map_err(|e| self.proto_err("filter request", e))?;
        self.request("updating the filter", MSG_UPDATEFILTER_REQ | MSG_IS_REPLY)?;
        Ok(())
    }

    /// Replaces the capture filter (our own traffic stays excluded).
    pub fn update_filter(&mut self, expr: &str) -> Result<(), RpcapError> {
        let insns = self.compile(expr)?;
        self.send_filter(&insns)
    }

    /// The remote counters for the running capture.
    pub fn stats(&mut self) -> Result<Stats, RpcapError> {
        self.out.clear();
        voxtap_proto::rpcap::encode_simple(&mut self.out, MSG_STATS_REQ);
        let (_, n) = self.request("reading statistics", MSG_STATS_REQ | MSG_IS_REPLY)?;
        voxtap_proto::rpcap::parse_stats(&self.inbuf[..n])
            .map_err(|e| self.proto_err("statistics reply", e))
    }

    /// Stops the capture; the interface stays open.
    pub fn end_capture(&mut self) -> Result<(), RpcapError> {
        self.out.clear();
        voxtap_proto::rpcap::encode_simple(&mut self.out, MSG_ENDCAP_REQ);
        self.request("ending the capture", MSG_ENDCAP_REQ | MSG_IS_REPLY)?;
        Ok(())
    }

    /// Says goodbye (rpcapd sends no reply to a close).
    pub fn close(mut self) -> Result<(), RpcapError> {
        self.out.clear();
        voxtap_proto::rpcap::encode_simple(&mut self.out, MSG_CLOSE);
        self.request("closing", 0)?;
        self.ctrl.shutdown();
        Ok(())
    }

    /// Whether this session runs over TLS (rpcaps).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

const MSG_AUTH_REPLY_TYPE: u8 = voxtap_proto::rpcap::MSG_AUTH_REQ | MSG_IS_REPLY;

enum DataKind {
    Tcp(Conn),
    Udp(UdpSocket),
}

/// Where captured packets arrive. Reads into one buffer that lives as long
/// as the capture: no allocation per packet.
pub struct DataChannel {
    kind: DataKind,
    addr: String,
    peer_ip: IpAddr,
    buf: Vec<u8>,
    /// TCP: bytes of the current message read so far (a read timeout can
    /// fall in the middle of a message; we resume where we were).
    filled: usize,
    linktype: u32,
    last_npkt: u32,
    lost: u64,
}

impl DataChannel {
    /// LINKTYPE of the captured packets.
    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    /// Packets rpcapd numbered but we never received (UDP data channel).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// rpcapd's number of the last packet received (rpcapd numbers the
    /// packets of a capture from 1, and its `server_sent` statistic is the
    /// last number it gave).
    pub fn last_number(&self) -> u32 {
        self.last_npkt
    }

    /// The next packet, or `None` if none came within the poll interval.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, RpcapError> {
        let Some(len) = self.fill_message()? else {
            return Ok(None);
        };
        let addr = &self.addr;
        let bytes = self.buf.get(..len).unwrap_or(&[]);
        let (m, _) =
            voxtap_proto::rpcap::parse_message(bytes).map_err(|source| RpcapError::Protocol {
                addr: addr.clone(),
                what: "packet message",
                source,
            })?;
        let p = voxtap_proto::rpcap::parse_packet(m.payload).map_err(|source| {
            RpcapError::Protocol {
                addr: addr.clone(),
                what: "packet message",
                source,
            }
        })?;
        if self.last_npkt != 0 && p.npkt > self.last_npkt.wrapping_add(1) {
            self.lost += u64::from(p.npkt - self.last_npkt - 1);
        }
        self.last_npkt = p.npkt;
        Ok(Some(p))
    }

    /// Gets one whole packet message into `buf[..len]`; other messages on
    /// the data channel are skipped, errors returned.
    fn fill_message(&mut self) -> Result<Option<usize>, RpcapError> {
        loop {
            let fill = match &mut self.kind {
                DataKind::Tcp(s) => fill_tcp(s, &mut self.buf, &mut self.filled, &self.addr)?,
                DataKind::Udp(s) => recv_udp(s, &mut self.buf, self.peer_ip, &self.addr)?,
            };
            let len = match fill {
                Fill::Whole(len) => len,
                Fill::Partial => continue,
                Fill::Idle => return Ok(None),
            };
            if self.is_packet(len)? {
                return Ok(Some(len));
            }
        }
    }

    /// Whether the message in `buf[..len]` is a packet; an error message is
    /// returned as the error, other messages are skipped.
    fn is_packet(&self, len: usize) -> Result<bool, RpcapError> {
        let h = Header::parse(self.buf.get(..len).unwrap_or(&[])).map_err(|source| {
            RpcapError::Protocol {
                addr: self.addr.clone(),
                what: "data channel message",
                source,
            }
        })?;
        match h.msg_type {
            MSG_PACKET => Ok(true),
            MSG_ERROR => {
                let p = self.buf.get(HEADER_LEN..len).unwrap_or(&[]);
                let e = voxtap_proto::rpcap::parse_error(h.value, p);
                Err(RpcapError::Server {
                    addr: self.addr.clone(),
                    what: "capturing".into(),
                    code: e.code,
                    code_name: voxtap_proto::rpcap::error_code_name(e.code),
                    message: e.message,
                })
            }
            other => {
                tracing::debug!(addr = %self.addr, msg_type = other, "ignored message on the data channel");
                Ok(false)
            }
        }
    }
}

/// What one read on the data channel gave.
enum Fill {
    /// A whole message is in `buf[..len]`.
    Whole(usize),
    /// Part of one, or a datagram from someone else: read again.
    Partial,
    /// Nothing within the poll timeout.
    Idle,
}

/// One read on the TCP data channel: the header first, then as much of the
/// body as it announces. `filled` counts the bytes of the message so far.
fn fill_tcp(
    s: &mut Conn,
    buf: &mut Vec<u8>,
    filled: &mut usize,
    addr: &str,
) -> Result<Fill, RpcapError> {
    let need = if *filled < HEADER_LEN {
        HEADER_LEN
    } else {
        let h = Header::parse(&buf[..HEADER_LEN]).map_err(|source| RpcapError::Protocol {
            addr: addr.to_string(),
            what: "data channel header",
            source,
        })?;
        HEADER_LEN + h.plen as usize
    };
    if *filled >= need {
        *filled = 0;
        return Ok(Fill::Whole(need));
    }
    if buf.len() < need {
        buf.resize(need, 0);
    }
    match s.read(&mut buf[*filled..need]) {
        Ok(0) => Err(RpcapError::Closed {
            addr: addr.to_string(),
            what: "captured packets",
        }),
        Ok(n) => {
            *filled += n;
            Ok(Fill::Partial)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Fill::Partial),
        Err(e) if is_timeout(&e) => Ok(Fill::Idle),
        Err(source) => Err(RpcapError::Io {
            addr: addr.to_string(),
            what: "reading captured packets",
            source,
        }),
    }
}

/// One datagram on the UDP data channel; datagrams from another host than
/// our rpcapd are ignored.
fn recv_udp(
    s: &UdpSocket,
    buf: &mut [u8],
    peer_ip: IpAddr,
    addr: &str,
) -> Result<Fill, RpcapError> {
    match s.recv_from(buf) {
        Ok((n, from)) if from.ip() == peer_ip => Ok(Fill::Whole(n)),
        // Not from our rpcapd: someone else's datagram.
        Ok(_) => Ok(Fill::Partial),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Fill::Partial),
        Err(e) if is_timeout(&e) => Ok(Fill::Idle),
        Err(source) => Err(RpcapError::Io {
            addr: addr.to_string(),
            what: "receiving captured packets",
            source,
        }),
    }
}
