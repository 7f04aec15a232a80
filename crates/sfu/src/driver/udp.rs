//! The media socket: one UDP socket for every participant, read and written in batches with
//! quinn-udp (recvmmsg, GRO where the kernel has it, the packet's destination address).

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;

/// Most datagrams handed to one `sendmmsg`.
pub(crate) const SEND_BATCH: usize = 64;

/// One `sendmmsg` over `batch` (at most [`SEND_BATCH`]); returns how many left.
fn sendmmsg_once(
    socket: &tokio::net::UdpSocket,
    batch: &[(SocketAddr, &[u8])],
    src_ip: Option<IpAddr>,
) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    let batch = &batch[..batch.len().min(SEND_BATCH)];
    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|(_, b)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = batch
        .iter()
        .map(|(a, _)| Some(SockaddrStorage::from(*a)))
        .collect();
    let pktinfo4 = match src_ip {
        Some(IpAddr::V4(ip)) => Some(libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip.octets()),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        }),
        _ => None,
    };
    let pktinfo6 = match src_ip {
        Some(IpAddr::V6(ip)) => Some(libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: ip.octets(),
            },
            ipi6_ifindex: 0,
        }),
        _ => None,
    };
    let cmsgs: Vec<ControlMessage<'_>> = match (&pktinfo4, &pktinfo6) {
        (Some(p), _) => vec![ControlMessage::Ipv4PacketInfo(p)],
        (_, Some(p)) => vec![ControlMessage::Ipv6PacketInfo(p)],
        _ => Vec::new(),
    };
    let cmsg_space = if cmsgs.is_empty() {
        None
    } else {
        Some(nix::cmsg_space!(libc::in6_pktinfo))
    };
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), cmsg_space);
    let results = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        &slices,
        &addrs,
        &cmsgs,
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    Ok(results.count())
}

/// Bytes reserved per datagram slot (larger than any WebRTC datagram on a 1500 MTU path).
const SLOT: usize = 2048;

/// One datagram read from the socket.
pub(crate) struct Datagram {
    pub from: SocketAddr,
    /// The address it was sent to (our IP when the kernel tells it, our port).
    pub local: SocketAddr,
    pub data: BytesMut,
}

/// The shared media socket.
pub(crate) struct MediaSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    arena: BytesMut,
    metas: Vec<RecvMeta>,
    batch: usize,
}

impl MediaSocket {
    /// Binds the socket.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<MediaSocket> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        let state = UdpSocketState::new((&std_socket).into())?;
        let io = tokio::net::UdpSocket::from_std(std_socket)?;
        let local = io.local_addr()?;
        let batch = quinn_udp::BATCH_SIZE.max(1);
        Ok(MediaSocket {
            io,
            state,
            local,
            arena: BytesMut::new(),
            metas: vec![RecvMeta::default(); batch],
            batch,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits until the socket is readable.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.io.readable().await
    }

    /// Reads one batch without waiting; `out` gets the datagrams. Returns how many were read
    /// (0 when nothing was pending).
    pub(crate) fn try_recv_batch(&mut self, out: &mut Vec<Datagram>) -> io::Result<usize> {
        let need = self.batch * SLOT;
        if self.arena.capacity() < need {
            // Reclaims the previous arena when every datagram cut from it has been dropped;
            // allocates a fresh one otherwise. Once per batch, never per packet.
            self.arena.clear();
            self.arena.reserve(need);
        }
        // SAFETY-free: zero-fill once; later batches reuse the bytes in place.
        self.arena.resize(need, 0);
        let mut slices: Vec<IoSliceMut<'_>> =
            self.arena.chunks_mut(SLOT).map(IoSliceMut::new).collect();
        let result = self.io.try_io(Interest::READABLE, || {
            self.state
                .recv((&self.io).into(), &mut slices, &mut self.metas)
        });
        drop(slices);
        let n = match result {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        for meta in &self.metas[..n] {
            let mut slot = self.arena.split_to(SLOT);
            slot.truncate(meta.len);
            let local = SocketAddr::new(meta.dst_ip.unwrap_or(self.local.ip()), self.local.port());
            let stride = meta.stride.max(1);
            while !slot.is_empty() {
                let seg = slot.split_to(stride.min(slot.len()));
                out.push(Datagram {
                    from: meta.addr,
                    local,
                    data: seg,
                });
            }
        }
        Ok(n)
    }

    /// Sends a batch of datagrams with as few system calls as the kernel allows
    /// (`sendmmsg`), waiting while the socket buffer is full. `src_ip`, when set, pins the
    /// source address (a socket bound to a wildcard on a machine with several addresses);
    /// it must be the same for the whole batch.
    pub(crate) async fn send_batch(
        &self,
        batch: &[(SocketAddr, &[u8])],
        src_ip: Option<IpAddr>,
    ) -> io::Result<()> {
        let mut sent = 0;
        while sent < batch.len() {
            self.io.writable().await?;
            match self.io.try_io(Interest::WRITABLE, || {
                sendmmsg_once(&self.io, &batch[sent..], src_ip)
            }) {
                Ok(n) => sent += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // One bad destination (e.g. unreachable) must not hold back the rest.
                    tracing::debug!(error = %e, destination = %batch[sent].0, "send failed");
                    sent += 1;
                }
            }
        }
        Ok(())
    }
}
