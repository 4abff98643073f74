//! Receive times the kernel stamps on RTP packets (`SO_TIMESTAMPNS`). The
//! media clock drains its sockets once per 20 ms tick, so the time a packet
//! is read says nothing about when it arrived; jitter (RFC 3550 A.8) needs
//! the time it arrived. std has no call for it: `recvmsg` with a control
//! buffer, here alone.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Asks the kernel to stamp what `socket` receives; a kernel that cannot
/// leaves packets unstamped (see [`recv`]).
pub fn enable(socket: &UdpSocket) {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor, an int option of the size passed.
    let ok = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    };
    if !ok {
        tracing::debug!("no receive timestamps on an RTP socket");
    }
}

/// As `recv_from`, with the packet's receive time (since the Unix epoch)
/// when the kernel stamped it.
pub fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
    // SAFETY: zeroed sockaddr_storage and msghdr are valid; every pointer
    // in `msg` points at a live local or at `buf`, with its true size; the
    // control messages are read only within `msg_controllen` through the
    // CMSG macros, and their data copied out unaligned.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut stamp = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                if let (Ok(s), Ok(ns)) = (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
                    stamp = Some(Duration::new(s, ns));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let from = match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let a = *(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                ))
            }
            libc::AF_INET6 => {
                let a = *(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                ))
            }
            _ => return Err(io::Error::other("a datagram from no address")),
        };
        Ok((n as usize, from, stamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_with_their_source_and_a_receive_time() {
        for (a, b) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let (Ok(rx), Ok(tx)) = (UdpSocket::bind(a), UdpSocket::bind(b)) else {
                continue; // no IPv6 here
            };
            enable(&rx);
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 64];
            let (n, from, stamp) = recv(&rx, &mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"hello"[..], tx.local_addr().unwrap()));
            let stamp = stamp.expect("stamped");
            assert!(
                stamp >= before - Duration::from_millis(5),
                "{stamp:?} {before:?}"
            );
            assert!(stamp < before + Duration::from_secs(5));
        }
    }
}
