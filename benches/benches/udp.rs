//! UDP per datagram on loopback, single against batched (1,100-byte datagrams, as SRTP
//! video). Times are per datagram.
//!
//! * `udp/send/send_to`: one `send_to` per datagram (what the SFU's driver does today: one
//!   `sendmsg` each). On loopback the sender's syscall also runs the receiver's network stack.
//! * `udp/send/sendmmsg-32`: 32 datagrams in one `sendmmsg` (nix): one system call, but the
//!   kernel still builds and delivers each datagram on its own.
//! * `udp/send/gso-32`: quinn-udp `try_send` with `segment_size`: 32 datagrams to the same
//!   destination in one `sendmsg` (UDP GSO). Only same-destination runs batch this way.
//! * `udp/recv/recv_from`: one `recv_from` per datagram.
//! * `udp/recv/recvmmsg-32`: quinn-udp `recv` (recvmmsg), up to 32 datagrams per call (what
//!   the SFU's driver does).
//!
//! Run: `cargo bench -p shopcall-benches --bench udp`. Results: docs/benchmarks.md.

use std::hint::black_box;
use std::io::IoSliceMut;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};

const LEN: usize = 1100;
const BATCH: usize = 32;

fn pair() -> (UdpSocket, UdpSocket) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_nonblocking(true).unwrap();
    let sock = socket2::SockRef::from(&rx);
    let _ = sock.set_recv_buffer_size(8 << 20);
    (rx, tx)
}

fn drain(rx: &UdpSocket, sink: &mut [u8]) {
    while rx.recv(sink).is_ok() {}
}

fn send(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp/send");
    let (rx, tx) = pair();
    let to = rx.local_addr().unwrap();
    let buf = vec![0u8; LEN];
    let mut sink = vec![0u8; 65536];
    group.bench_function("send_to", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH as u64);
                let t = Instant::now();
                for _ in 0..n {
                    tx.send_to(black_box(&buf), to).unwrap();
                }
                total += t.elapsed();
                drain(&rx, &mut sink);
                left -= n;
            }
            total
        })
    });

    let bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; LEN]).collect();
    let slices: Vec<[std::io::IoSlice<'_>; 1]> =
        bufs.iter().map(|b| [std::io::IoSlice::new(b)]).collect();
    let addrs: Vec<Option<nix::sys::socket::SockaddrStorage>> = (0..BATCH)
        .map(|_| Some(nix::sys::socket::SockaddrStorage::from(to)))
        .collect();
    let mut headers =
        nix::sys::socket::MultiHeaders::<nix::sys::socket::SockaddrStorage>::preallocate(
            BATCH, None,
        );
    group.bench_function(format!("sendmmsg-{BATCH}"), |b| {
        b.iter_custom(|iters| {
            use std::os::fd::AsRawFd;
            let mut total = Duration::ZERO;
            let rounds = iters.div_ceil(BATCH as u64);
            for _ in 0..rounds {
                let t = Instant::now();
                let sent = nix::sys::socket::sendmmsg(
                    tx.as_raw_fd(),
                    &mut headers,
                    black_box(&slices),
                    &addrs,
                    [],
                    nix::sys::socket::MsgFlags::empty(),
                )
                .unwrap()
                .count();
                total += t.elapsed();
                assert_eq!(sent, BATCH);
                drain(&rx, &mut sink);
            }
            total * (iters as u32) / ((rounds * BATCH as u64) as u32).max(1)
        })
    });

    let state = UdpSocketState::new((&tx).into()).unwrap();
    let segments = BATCH.min(state.max_gso_segments());
    let batch = vec![0u8; LEN * segments];
    group.bench_function(format!("gso-{segments}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let rounds = iters.div_ceil(segments as u64);
            for _ in 0..rounds {
                let t = Instant::now();
                state
                    .try_send(
                        (&tx).into(),
                        &Transmit {
                            destination: to,
                            ecn: None,
                            contents: black_box(&batch),
                            segment_size: Some(LEN),
                            src_ip: None,
                        },
                    )
                    .unwrap();
                total += t.elapsed();
                drain(&rx, &mut sink);
            }
            total * (iters as u32) / ((rounds * segments as u64) as u32).max(1)
        })
    });
    group.finish();
}

fn recv(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp/recv");
    let (rx, tx) = pair();
    let to = rx.local_addr().unwrap();
    let buf = vec![0u8; LEN];
    let mut sink = vec![0u8; 2048];
    let fill = |n: usize| {
        for _ in 0..n {
            tx.send_to(&buf, to).unwrap();
        }
    };
    group.bench_function("recv_from", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH as u64) as usize;
                fill(n);
                let t = Instant::now();
                for _ in 0..n {
                    black_box(rx.recv_from(&mut sink).unwrap());
                }
                total += t.elapsed();
                left -= n as u64;
            }
            total
        })
    });

    let state = UdpSocketState::new((&rx).into()).unwrap();
    let mut arena = vec![0u8; 2048 * BATCH];
    let mut metas = vec![RecvMeta::default(); BATCH];
    group.bench_function(format!("recvmmsg-{BATCH}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH as u64) as usize;
                fill(n);
                let t = Instant::now();
                let mut got = 0;
                while got < n {
                    let mut slices: Vec<IoSliceMut<'_>> =
                        arena.chunks_mut(2048).map(IoSliceMut::new).collect();
                    got += state
                        .recv((&rx).into(), &mut slices, &mut metas)
                        .unwrap_or(0);
                }
                total += t.elapsed();
                left -= n as u64;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, send, recv);
criterion_main!(benches);
