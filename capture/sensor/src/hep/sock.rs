//! Socket options the HEP listener needs that std does not offer: a large
//! UDP receive buffer, and the kernel's count of datagrams it dropped on
//! the socket (`SO_RXQ_OVFL`), read with each `recvmsg`.
//!
//! A burst of mirrored SIP larger than the socket buffer was dropped by the
//! kernel without a trace in the listener's counters; now those drops are
//! counted in `dropped`.

use std::io;
use std::net::UdpSocket;

/// Receive buffer asked for on the UDP socket (the kernel may give less:
/// `net.core.rmem_max`, unless the process may force it).
pub const UDP_RCVBUF: usize = 8 << 20;

/// Asks for a `bytes` receive buffer (forced past `rmem_max` when allowed:
/// CAP_NET_ADMIN), and for the kernel's drop count with each datagram.
/// Returns the buffer size the kernel gave, where it says.
#[cfg(target_os = "linux")]
pub fn tune_udp(s: &UdpSocket, bytes: usize) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt(fd, libc::SO_RCVBUFFORCE, size).is_err() {
        let _ = setsockopt(fd, libc::SO_RCVBUF, size);
    }
    let _ = setsockopt(fd, libc::SO_RXQ_OVFL, 1);
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `got` and `len` are valid for writes of their sizes; the
    // kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw mut got).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| usize::try_from(got).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
pub fn tune_udp(_s: &UdpSocket, _bytes: usize) -> Option<usize> {
    None
}

#[cfg(target_os = "linux")]
fn setsockopt(fd: libc::c_int, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a valid c_int for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receives one datagram into `buf`: its length, and the kernel's count of
/// datagrams dropped on this socket since it was created, when the kernel
/// sent one (after [`tune_udp`], with every datagram once any was dropped).
#[cfg(target_os = "linux")]
pub fn recv_counting_drops(s: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
    use std::os::fd::AsRawFd;
    // Room for one cmsg holding a u32 (CMSG_SPACE(4) is 24 on 64-bit).
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive
    // and writable for the call.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut drops = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
    // within `msg_controllen`; the data of an SO_RXQ_OVFL cmsg is a u32.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((usize::try_from(n).unwrap_or(0), drops))
}

#[cfg(not(target_os = "linux"))]
pub fn recv_counting_drops(s: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
    s.recv(buf).map(|n| (n, None))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Datagrams sent to a socket whose (small) buffer is full are dropped
    /// by the kernel; the next datagram read says how many.
    #[test]
    fn kernel_drops_are_reported() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(tune_udp(&rx, 4096).is_some());
        let dgram = [7u8; 1000];
        for _ in 0..200 {
            tx.send_to(&dgram, rx.local_addr().unwrap()).unwrap();
        }
        // The kernel stamps each datagram with the count when it queues
        // it: those queued before the drops say nothing, the next one does.
        let mut buf = [0u8; 2000];
        rx.set_nonblocking(true).unwrap();
        let mut queued = 0;
        while let Ok((n, drops)) = recv_counting_drops(&rx, &mut buf) {
            assert_eq!((n, drops), (1000, None));
            queued += 1;
        }
        assert!(queued > 0 && queued < 100, "{queued}");
        tx.send_to(&dgram, rx.local_addr().unwrap()).unwrap();
        rx.set_nonblocking(false).unwrap();
        let (n, drops) = recv_counting_drops(&rx, &mut buf).unwrap();
        assert_eq!(n, 1000);
        let drops = drops.expect("an SO_RXQ_OVFL count");
        assert_eq!(drops, 200 - queued);
        // A big buffer is granted (up to rmem_max, more with CAP_NET_ADMIN).
        let big = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(tune_udp(&big, UDP_RCVBUF).unwrap() > 4096 * 2);
    }
}
