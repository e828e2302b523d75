//! Filter expressions compiled to classic BPF by the system's libpcap
//! (`pcap_open_dead` + `pcap_compile`): rpcapd takes compiled instructions,
//! not text, and libpcap's compiler is the reference for the tcpdump filter
//! language, so a private re-implementation of a subset would only disagree
//! with what users type into tcpdump. Linking libpcap costs nothing here:
//! Debian's libpcap-dev is already a build dependency and macOS ships
//! libpcap in its SDK.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::Mutex;

use thiserror::Error;

use voxtap_proto::rpcap::BpfInsn;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("filter '{expr}' contains a NUL byte")]
    Nul { expr: String },
    #[error("filter '{expr}' does not compile: {reason}")]
    Compile { expr: String, reason: String },
}

#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut RawInsn,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[link(name = "pcap")]
unsafe extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut c_void;
    fn pcap_compile(
        p: *mut c_void,
        fp: *mut BpfProgram,
        s: *const c_char,
        optimize: c_int,
        netmask: u32,
    ) -> c_int;
    fn pcap_freecode(fp: *mut BpfProgram);
    fn pcap_geterr(p: *mut c_void) -> *mut c_char;
    fn pcap_close(p: *mut c_void);
}

/// libpcap before 1.8 had a non-reentrant compiler; one lock costs nothing
/// at the rate filters are compiled (once per capture start).
static COMPILE: Mutex<()> = Mutex::new(());

/// `PCAP_NETMASK_UNKNOWN`: only `ip broadcast` needs a netmask.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;

/// Compiles `expr` for a capture of `linktype` (LINKTYPE value).
pub fn compile(expr: &str, linktype: u32, snaplen: u32) -> Result<Vec<BpfInsn>, FilterError> {
    let c_expr = CString::new(expr).map_err(|_| FilterError::Nul {
        expr: expr.to_string(),
    })?;
    let _guard = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    let linktype = c_int::try_from(linktype).unwrap_or(1);
    let snaplen = c_int::try_from(snaplen).unwrap_or(262_144);
    // SAFETY: pcap_open_dead allocates a handle used only for compiling; it
    // is checked for NULL and closed on every path below.
    let p = unsafe { pcap_open_dead(linktype, snaplen) };
    if p.is_null() {
        return Err(FilterError::Compile {
            expr: expr.to_string(),
            reason: "libpcap could not allocate a handle".into(),
        });
    }
    let mut prog = BpfProgram {
        bf_len: 0,
        bf_insns: std::ptr::null_mut(),
    };
    // SAFETY: p is a live handle, prog a valid out-parameter, c_expr a
    // NUL-terminated string that outlives the call.
    let rc = unsafe { pcap_compile(p, &mut prog, c_expr.as_ptr(), 1, NETMASK_UNKNOWN) };
    let result = if rc != 0 {
        // SAFETY: pcap_geterr returns the handle's NUL-terminated error
        // buffer, valid until pcap_close below; we copy it out first.
        let reason = unsafe { CStr::from_ptr(pcap_geterr(p)) }
            .to_string_lossy()
            .into_owned();
        Err(FilterError::Compile {
            expr: expr.to_string(),
            reason,
        })
    } else {
        let insns = if prog.bf_insns.is_null() || prog.bf_len == 0 {
            Vec::new()
        } else {
            // SAFETY: on success libpcap filled bf_insns with bf_len
            // instructions; we copy them before pcap_freecode.
            unsafe { std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize) }
                .iter()
                .map(|r| BpfInsn {
                    code: r.code,
                    jt: r.jt,
                    jf: r.jf,
                    k: r.k,
                })
                .collect()
        };
        // SAFETY: prog was filled by pcap_compile and is freed once.
        unsafe { pcap_freecode(&mut prog) };
        Ok(insns)
    };
    // SAFETY: p came from pcap_open_dead and is not used after this.
    unsafe { pcap_close(p) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our compiled programs are the ones tcpdump builds (`tcpdump -dd -y
    /// EN10MB EXPR` prints them as C initialisers, snaplen 262144).
    #[test]
    fn rpcap_bpf_matches_tcpdump() {
        for expr in [
            "udp",
            "tcp port 5060",
            "host 10.0.0.1 and udp",
            "udp and (port 5061 or port 5070 or portrange 16000-17999)",
        ] {
            let out = std::process::Command::new("tcpdump")
                .args(["-dd", "-y", "EN10MB", expr])
                .output()
                .expect("tcpdump runs (apt-get install tcpdump)");
            assert!(out.status.success(), "tcpdump -dd {expr}");
            let want: Vec<BpfInsn> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l
                        .trim()
                        .trim_start_matches('{')
                        .trim_end_matches("},")
                        .split(',')
                        .map(str::trim)
                        .collect();
                    let n = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
                    let num = |s: &str| s.parse::<u32>().ok();
                    Some(BpfInsn {
                        code: n(f.first()?)? as u16,
                        jt: num(f.get(1)?)? as u8,
                        jf: num(f.get(2)?)? as u8,
                        k: n(f.get(3)?)?,
                    })
                })
                .collect();
            assert!(!want.is_empty(), "parsed tcpdump output for {expr}");
            assert_eq!(compile(expr, 1, 262_144).unwrap(), want, "{expr}");
        }
    }

    #[test]
    fn rpcap_bpf_error_names_filter() {
        let e = compile("udp and porrt 5", 1, 65535).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("'udp and porrt 5'"), "{s}");
        assert!(s.contains("syntax error"), "{s}");
        assert!(matches!(
            compile("a\0b", 1, 1),
            Err(FilterError::Nul { .. })
        ));
    }
}
