//! Giving up privileges once the sensor is attached, and pinning threads.
//!
//! Loading and attaching XDP needs CAP_BPF/CAP_SYS_ADMIN and CAP_NET_ADMIN;
//! afterwards the sensor only uses file descriptors it already holds (the
//! ring buffer is mmap'ed, map updates are bpf(2) calls on an open map fd,
//! which kernels since 6.5 check by fd, not by capability; the XDP link is
//! released by closing its fd). So it keeps no capability at all.

use std::path::Path;

use anyhow::{Context, Result, bail};

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability of the process (bounding, ambient, then the
/// effective/permitted/inheritable sets), sets `no_new_privs`, and, when
/// `user` is not empty, switches to that user after handing `owned` paths
/// (recursively) to it. Call it before starting threads: capability sets are
/// per thread and new threads inherit the caller's.
pub(crate) fn drop_privileges(user: &str, owned: &[&Path]) -> Result<()> {
    if !user.is_empty() {
        switch_user(user, owned)?;
    }
    // Bounding set first: dropping needs CAP_SETPCAP, which the capset below
    // removes. Errors past the last capability the kernel knows are expected.
    for cap in 0..64 {
        // SAFETY: plain prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            break;
        }
    }
    // SAFETY: plain prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_NO_NEW_PRIVS)");
    }
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset with a v3 header and two data structs, as the ABI wants.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("capset(empty)");
    }
    let eff = effective_caps()?;
    if eff != 0 {
        bail!("capabilities still effective after capset: {eff:#x}");
    }
    tracing::info!(
        user = if user.is_empty() { "(unchanged)" } else { user },
        "dropped all capabilities (CapEff=0, CapPrm=0, bounding set empty) and set no_new_privs"
    );
    Ok(())
}

/// CapEff of this thread, from /proc.
pub(crate) fn effective_caps() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/status").context("reading CapEff")?;
    let v = s
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .context("no CapEff line")?;
    u64::from_str_radix(v.trim(), 16).context("parsing CapEff")
}

fn switch_user(user: &str, owned: &[&Path]) -> Result<()> {
    let name = std::ffi::CString::new(user).context("user name")?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy
    // the two integers out before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("user {user:?} does not exist");
    }
    // SAFETY: non-null result of getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    for p in owned {
        chown_tree(p, uid, gid).with_context(|| format!("handing {} to {user}", p.display()))?;
    }
    // SAFETY: integer syscalls; order matters (groups and gid while still root).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgroups");
        }
        if libc::setgid(gid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgid");
        }
        if libc::setuid(uid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setuid");
        }
    }
    tracing::info!(user, uid, gid, "switched user");
    Ok(())
}

fn chown_tree(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
    if p.is_dir() {
        for e in std::fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Pins the calling thread to `core`.
pub(crate) fn pin_to_core(core: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it for
    // core < CPU_SETSIZE, checked below.
    unsafe {
        if core >= libc::CPU_SETSIZE as usize {
            bail!("core {core} out of range");
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sched_setaffinity(core {core})"));
        }
    }
    Ok(())
}
