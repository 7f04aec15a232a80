//! The media socket: one UDP socket for every participant, read and written in batches with
//! quinn-udp (recvmmsg, GRO where the kernel has it, the packet's destination address).

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

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

    /// Sends one datagram, waiting while the socket buffer is full.
    pub(crate) async fn send(
        &self,
        destination: SocketAddr,
        src_ip: Option<IpAddr>,
        contents: &[u8],
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: None,
            src_ip,
        };
        loop {
            self.io.writable().await?;
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.io).into(), &transmit)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
