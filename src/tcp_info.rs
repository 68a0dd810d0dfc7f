//! The kernel's view of a TCP connection (`TCP_INFO`), asked through sock_diag netlink.
//!
//! The library forbids `unsafe`, and `getsockopt(TCP_INFO)` needs it; the netlink crates wrap
//! the same information safely. One query is a netlink socket, one request and one answer: it
//! is made only when asked for, never per message.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// What the kernel knows of one TCP connection, from `TCP_INFO`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelTcp {
    /// The smoothed round-trip time.
    pub(crate) rtt: Duration,
    /// Bytes written to the socket that the kernel has not sent yet.
    pub(crate) notsent: u32,
}

/// The kernel's smoothed RTT of the connection between `local` and `peer`.
pub(crate) fn smoothed_rtt(local: SocketAddr, peer: SocketAddr) -> io::Result<Duration> {
    kernel_tcp(local, peer).map(|k| k.rtt)
}

#[cfg(target_os = "linux")]
pub(crate) fn kernel_tcp(local: SocketAddr, peer: SocketAddr) -> io::Result<KernelTcp> {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::nlas::Nla;
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NlAddr};

    let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states: StateFlags::all(),
            socket_id: SocketId {
                source_port: local.port(),
                destination_port: peer.port(),
                source_address: local.ip(),
                destination_address: peer.ip(),
                interface_id: 0,
                cookie: [0xff; 8], // INET_DIAG_NOCOOKIE: find it by its addresses
            },
        })
        .into(),
    );
    request.finalize();
    let mut buf = [0u8; 8192];
    let len = request.buffer_len();
    request.serialize(&mut buf[..len]);

    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NlAddr::new(0, 0))?;
    socket.send(&buf[..len], 0)?;
    let n = socket.recv(&mut &mut buf[..], 0)?;
    let answer = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match answer.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => r
            .nlas
            .iter()
            .find_map(|nla| match nla {
                Nla::TcpInfo(info) => Some(KernelTcp {
                    rtt: Duration::from_micros(info.rtt.into()),
                    notsent: info.notsent_bytes,
                }),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no TCP_INFO in the answer")),
        // ENOENT when the socket is gone (closed meanwhile).
        NetlinkPayload::Error(e) => Err(e.to_io()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected sock_diag answer",
        )),
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn kernel_tcp(_local: SocketAddr, _peer: SocketAddr) -> io::Result<KernelTcp> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the kernel's RTT is read on Linux only",
    ))
}
