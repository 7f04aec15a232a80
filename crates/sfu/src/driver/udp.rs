//! The media socket: one UDP socket for every participant, read and written in batches with
//! quinn-udp (recvmmsg, GRO where the kernel has it, the packet's destination address).

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
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
    /// The datagrams of one GSO send, back to back.
    gso_buf: Vec<u8>,
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
        // quinn-udp turns UDP GRO on, which lets the kernel hand over several datagrams from
        // one sender as one buffer of up to 64 KiB (from a GSO sender, or coalesced by a
        // NIC's GRO): a 2,048-byte slot would cut it and lose all but the first. Off, every
        // datagram lands in a slot of its own. (Receive-side coalescing would need 64 KiB
        // slots; WebRTC clients do not send GSO.)
        if let Err(e) = nix::sys::socket::setsockopt(
            &std_socket,
            nix::sys::socket::sockopt::UdpGroSegment,
            &false,
        ) {
            tracing::debug!(error = %e, "turning UDP GRO off failed (a kernel without it)");
        }
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
            gso_buf: Vec::with_capacity(GSO_MAX_BYTES),
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

    /// Sends a batch of datagrams with as few system calls, and as little kernel work, as it
    /// can, waiting while the socket buffer is full. `src_ip`, when set, pins the source
    /// address (a socket bound to a wildcard on a machine with several addresses); it must be
    /// the same for the whole batch.
    ///
    /// The batch is first put in destination order (a stable sort: each destination's
    /// datagrams keep their order; the order between destinations never mattered). Then each
    /// run of two or more datagrams to one destination with the same size (the last may be
    /// shorter, as the last packet of a video frame often is) leaves as one UDP GSO send, and
    /// the rest go together through `sendmmsg`. Measured on this stack (docs/benchmarks.md):
    /// the kernel's per-datagram work dominates a `sendmmsg` (2.7 us per datagram, as much as
    /// one `sendto` each), while GSO segments cost 0.47 us each. Without kernel GSO support
    /// (`max_gso_segments` 1, or after the kernel refused it once) everything goes through
    /// `sendmmsg`.
    pub(crate) async fn send_batch(
        &mut self,
        batch: &mut [(SocketAddr, &[u8])],
        src_ip: Option<IpAddr>,
    ) {
        batch.sort_by_key(|(to, _)| *to);
        let mut singles: Vec<(SocketAddr, &[u8])> = Vec::with_capacity(batch.len());
        let mut i = 0;
        while i < batch.len() {
            let n = gso_run(batch, i, self.state.max_gso_segments());
            if n < 2 {
                singles.push(batch[i]);
                i += 1;
                continue;
            }
            // This destination's earlier datagrams go first.
            if singles.last().is_some_and(|(to, _)| *to == batch[i].0) {
                self.send_mmsg(&singles, src_ip).await;
                singles.clear();
            }
            let run = &batch[i..i + n];
            if !self.send_gso(run, src_ip).await {
                singles.extend_from_slice(run);
            }
            i += n;
        }
        self.send_mmsg(&singles, src_ip).await;
    }

    /// One GSO send of `run` (one destination, equal sizes but for a shorter last one).
    /// Returns false when the kernel refused segmentation offload (quinn-udp then turns it
    /// off for this socket), so the caller sends the run one datagram at a time.
    async fn send_gso(&mut self, run: &[(SocketAddr, &[u8])], src_ip: Option<IpAddr>) -> bool {
        let segment = run[0].1.len();
        self.gso_buf.clear();
        for (_, d) in run {
            self.gso_buf.extend_from_slice(d);
        }
        let transmit = Transmit {
            destination: run[0].0,
            ecn: None,
            contents: &self.gso_buf,
            segment_size: Some(segment),
            src_ip,
        };
        loop {
            if let Err(e) = self.io.writable().await {
                tracing::debug!(error = %e, "media socket not writable");
                return true;
            }
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.io).into(), &transmit)
            }) {
                Ok(()) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if self.state.max_gso_segments() < 2 => {
                    tracing::info!(error = %e, "UDP GSO refused by the kernel; sending datagrams one by one");
                    return false;
                }
                Err(e) => {
                    // As with one bad destination in a sendmmsg: the run is lost, the rest goes.
                    tracing::debug!(error = %e, destination = %run[0].0, "send failed");
                    return true;
                }
            }
        }
    }

    /// Sends `batch` with `sendmmsg`, up to [`SEND_BATCH`] datagrams per call.
    async fn send_mmsg(&self, batch: &[(SocketAddr, &[u8])], src_ip: Option<IpAddr>) {
        let mut sent = 0;
        while sent < batch.len() {
            if let Err(e) = self.io.writable().await {
                tracing::debug!(error = %e, "media socket not writable");
                return;
            }
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
    }
}

/// Largest payload of one GSO send (the kernel's limit is 64 KiB including headers).
const GSO_MAX_BYTES: usize = 60_000;

/// How many datagrams from `batch[start]` on can leave as one GSO send: the same destination,
/// the same size as the first (the last one may be shorter, and ends the run), at most
/// `max_segments` and [`GSO_MAX_BYTES`] in all.
fn gso_run(batch: &[(SocketAddr, &[u8])], start: usize, max_segments: usize) -> usize {
    let (to, first) = batch[start];
    let size = first.len();
    if size == 0 {
        return 1;
    }
    let limit = max_segments.min(GSO_MAX_BYTES / size).max(1);
    let mut n = 1;
    while n < limit {
        let Some((next_to, next)) = batch.get(start + n) else {
            break;
        };
        if *next_to != to || next.len() > size || next.is_empty() {
            break;
        }
        n += 1;
        if next.len() < size {
            break;
        }
    }
    n
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

    #[test]
    fn a_gso_run_is_one_destination_with_equal_sizes_and_a_shorter_last() {
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let b = SocketAddr::from(([127, 0, 0, 1], 2));
        let (big, small, bigger) = (vec![0u8; 1000], vec![0u8; 300], vec![0u8; 1001]);
        let batch: Vec<(SocketAddr, &[u8])> = vec![
            (a, &big),
            (a, &big),
            (a, &small), // ends the run: shorter
            (a, &big),
            (a, &bigger), // not in the run: longer
            (b, &big),
            (b, &big),
        ];
        assert_eq!(gso_run(&batch, 0, 64), 3);
        assert_eq!(gso_run(&batch, 3, 64), 1);
        assert_eq!(gso_run(&batch, 4, 64), 1);
        assert_eq!(gso_run(&batch, 5, 64), 2);
        assert_eq!(gso_run(&batch, 5, 1), 1, "no GSO on this socket");
        assert_eq!(gso_run(&batch, 0, 2), 2);
        let many: Vec<(SocketAddr, &[u8])> = vec![(a, &big[..]); 100];
        assert_eq!(gso_run(&many, 0, 64), 60, "60,000 bytes at most");
    }

    #[tokio::test]
    async fn a_mixed_batch_arrives_whole_and_in_order_per_destination() {
        let mut socket = MediaSocket::bind(loopback(), 1 << 20).unwrap();
        let receivers: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind(loopback()).unwrap())
            .collect();
        for r in &receivers {
            r.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
        }
        // Interleaved destinations; runs of equal sizes (GSO), a shorter frame end, odd sizes
        // (sendmmsg); each datagram names its destination and its index for that destination.
        let mut owned: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut counts = [0usize; 3];
        for i in 0..90 {
            let r = (i * 7 / 5) % 3;
            let len = match i % 9 {
                8 => 333,
                5 => 1100 + i,
                _ => 1100,
            };
            let mut d = vec![r as u8; len];
            d[1] = counts[r] as u8;
            counts[r] += 1;
            owned.push((r, d));
        }
        let mut batch: Vec<(SocketAddr, &[u8])> = owned
            .iter()
            .map(|(r, d)| (receivers[*r].local_addr().unwrap(), &d[..]))
            .collect();
        for chunk in batch.chunks_mut(SEND_BATCH) {
            socket.send_batch(chunk, None).await;
        }
        for (r, receiver) in receivers.iter().enumerate() {
            let want: Vec<&Vec<u8>> = owned
                .iter()
                .filter(|(to, _)| *to == r)
                .map(|(_, d)| d)
                .collect();
            let mut buf = [0u8; 2048];
            for (k, w) in want.iter().enumerate() {
                let (n, from) = receiver.recv_from(&mut buf).expect("datagram lost");
                assert_eq!(from, socket.local_addr());
                assert_eq!(&buf[..n], &w[..], "receiver {r}, datagram {k}");
            }
        }
    }

    #[tokio::test]
    async fn a_gso_run_between_two_media_sockets_arrives_as_separate_datagrams() {
        // The receiving socket must not coalesce (GRO) what its 2,048-byte slots cannot hold:
        // a run of five 1,100-byte segments would arrive as one 5,500-byte datagram, cut.
        let mut sender = MediaSocket::bind(loopback(), 0).unwrap();
        let mut receiver = MediaSocket::bind(loopback(), 1 << 20).unwrap();
        let to = receiver.local_addr();
        let owned: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1100]).collect();
        let mut batch: Vec<(SocketAddr, &[u8])> = owned.iter().map(|d| (to, &d[..])).collect();
        sender.send_batch(&mut batch, None).await;
        let mut got = Vec::new();
        while got.len() < owned.len() {
            tokio::time::timeout(std::time::Duration::from_secs(5), receiver.readable())
                .await
                .expect("datagrams lost")
                .unwrap();
            receiver.try_recv_batch(&mut got).unwrap();
        }
        let sizes: Vec<usize> = got.iter().map(|d| d.data.len()).collect();
        assert_eq!(sizes, vec![1100; 5]);
        for (i, d) in got.iter().enumerate() {
            assert!(d.data.iter().all(|b| *b == i as u8), "datagram {i}");
        }
    }
}
