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

/// How many full receive batches one zero-filled arena serves before it is renewed.
const ARENA_BATCHES: usize = 8;

/// Sets the socket's receive and send buffers to `bytes`, with the `*FORCE` options first
/// (they lift `net.core.rmem_max` / `wmem_max` for a privileged daemon); returns the sizes the
/// kernel reports afterwards (it doubles what it grants, for its own bookkeeping).
fn set_buffers(socket: &std::net::UdpSocket, bytes: usize) -> (usize, usize) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err()
        && let Err(e) = setsockopt(socket, sockopt::RcvBuf, &bytes)
    {
        tracing::warn!(error = %e, "setting SO_RCVBUF on the media socket failed");
    }
    if setsockopt(socket, sockopt::SndBufForce, &bytes).is_err()
        && let Err(e) = setsockopt(socket, sockopt::SndBuf, &bytes)
    {
        tracing::warn!(error = %e, "setting SO_SNDBUF on the media socket failed");
    }
    (
        getsockopt(socket, sockopt::RcvBuf).unwrap_or(0),
        getsockopt(socket, sockopt::SndBuf).unwrap_or(0),
    )
}

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
    /// Binds the socket and asks for `buffer` bytes of kernel receive and send buffer (see
    /// [`SfuConfig::udp_socket_buffer`](crate::SfuConfig::udp_socket_buffer); 0 keeps the
    /// kernel's default).
    pub(crate) fn bind(addr: SocketAddr, buffer: usize) -> io::Result<MediaSocket> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        if buffer > 0 {
            let (rcv, snd) = set_buffers(&std_socket, buffer);
            tracing::info!(
                requested = buffer,
                receive = rcv,
                send = snd,
                "media socket buffers (the kernel reports twice what it was given)"
            );
            if rcv < buffer {
                tracing::warn!(
                    requested = buffer,
                    granted = rcv,
                    "the media socket's receive buffer is smaller than configured: raise \
                     net.core.rmem_max (sysctl) or run with CAP_NET_ADMIN, or bursts under \
                     load are dropped by the kernel"
                );
            }
        }
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
        if self.arena.len() < need {
            // Every datagram is cut from the front of the arena, and what remains stays
            // initialised, so the arena is zero-filled only when it runs out: once per
            // ARENA_BATCHES full batches, never per packet (re-zeroing 64 KiB for every
            // batch was 22 % of all instructions at low load, when a batch is one datagram).
            // `reserve` reclaims the old allocation when every datagram cut from it has been
            // dropped, and allocates a fresh one otherwise.
            self.arena.clear();
            self.arena.reserve(need * ARENA_BATCHES);
            self.arena.resize(need * ARENA_BATCHES, 0);
        }
        let mut slices: Vec<IoSliceMut<'_>> = self.arena[..need]
            .chunks_mut(SLOT)
            .map(IoSliceMut::new)
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[tokio::test]
    async fn the_socket_gets_the_configured_buffer_or_the_kernel_cap() {
        let small = MediaSocket::bind(loopback(), 0).unwrap();
        let default =
            nix::sys::socket::getsockopt(&small.io, nix::sys::socket::sockopt::RcvBuf).unwrap();
        let big = MediaSocket::bind(loopback(), 4 << 20).unwrap();
        let got = nix::sys::socket::getsockopt(&big.io, nix::sys::socket::sockopt::RcvBuf).unwrap();
        // Privileged: exactly what was asked (reported doubled). Unprivileged: at least the
        // default, capped by net.core.rmem_max.
        assert!(got >= default, "{got} < default {default}");
        let root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        if root {
            assert_eq!(got, 8 << 20);
        }
    }

    #[tokio::test]
    async fn many_batches_reuse_one_arena_and_every_datagram_arrives_intact() {
        let mut socket = MediaSocket::bind(loopback(), 1 << 20).unwrap();
        let to = socket.local_addr();
        let client = std::net::UdpSocket::bind(loopback()).unwrap();
        let mut got = Vec::new();
        // More datagrams than one arena holds (ARENA_BATCHES x batch slots), each distinct,
        // read one or a few per batch: each must come out whole and in order.
        let total = socket.batch * ARENA_BATCHES * 2 + 3;
        for i in 0..total {
            let len = 20 + i % 1200;
            let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            client.send_to(&payload, to).unwrap();
            if i % 3 == 2 || i + 1 == total {
                while got.len() <= i {
                    tokio::time::timeout(std::time::Duration::from_secs(5), socket.readable())
                        .await
                        .expect("datagrams lost")
                        .unwrap();
                    socket.try_recv_batch(&mut got).unwrap();
                }
            }
        }
        assert_eq!(got.len(), total);
        for (i, d) in got.iter().enumerate() {
            let len = 20 + i % 1200;
            let want: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            assert_eq!(&d.data[..], &want[..], "datagram {i}");
            assert_eq!(d.from, client.local_addr().unwrap());
        }
    }
}
