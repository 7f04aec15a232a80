//! RogueSsrcTap: the interceptor behind [`PeerConfig::rogue_video_ssrc`](crate::PeerConfig):
//! a misbehaving client that sends every video packet twice, the second time on an SSRC its
//! SDP never declared.
//!
//! It sits wire-most in the chain (below congestion control), so the copies skip every
//! built-in interceptor (no sender reports, no NACK history, no TWCC sequence numbers for
//! them) and go straight to SRTP, which keys any SSRC. A copy keeps the original's header
//! extensions (the mid extension, when negotiated), payload type, sequence number, timestamp
//! and payload; only the SSRC differs. The video SSRCs are learned from the streams the
//! sending side binds (`bind_local_stream`, by MIME type).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio;
use rtc::shared::error::Error;

/// Slot of the tap: wire-most, below [`rtc::interceptor::Slot::CongestionControl`] (1 000).
pub(crate) const SLOT: usize = 500;

/// See the module docs.
pub(crate) struct RogueSsrcTap {
    rogue_ssrc: u32,
    video_ssrcs: Vec<u32>,
    /// Copies handed to the wire-ward side (shared with [`PeerStats`](crate::PeerStats)).
    sent: Arc<AtomicU64>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl RogueSsrcTap {
    pub(crate) fn new(rogue_ssrc: u32, sent: Arc<AtomicU64>) -> Self {
        RogueSsrcTap {
            rogue_ssrc,
            video_ssrcs: Vec::new(),
            sent,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for RogueSsrcTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let copy = match &msg.message.packet {
            Packet::Rtp(rtp) if self.video_ssrcs.contains(&rtp.header.ssrc) => {
                let mut copy = rtp.clone();
                copy.header.ssrc = self.rogue_ssrc;
                Some(TaggedPacket {
                    now: msg.now,
                    transport: msg.transport,
                    message: AttributedPacket::new(Packet::Rtp(copy)),
                })
            }
            _ => None,
        };
        self.write_queue.push_back(msg);
        if let Some(copy) = copy {
            self.write_queue.push_back(copy);
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for RogueSsrcTap {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let video = info
            .mime_type
            .get(..6)
            .is_some_and(|kind| kind.eq_ignore_ascii_case("video/"));
        if video && info.ssrc != self.rogue_ssrc && !self.video_ssrcs.contains(&info.ssrc) {
            self.video_ssrcs.push(info.ssrc);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.video_ssrcs.retain(|s| *s != info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc::rtp::header::Header;
    use rtc::shared::{TransportContext, TransportProtocol};
    use sansio::Protocol;

    fn info(ssrc: u32, mime: &str) -> StreamInfo {
        StreamInfo {
            ssrc,
            mime_type: mime.to_owned(),
            ..Default::default()
        }
    }

    fn rtp(ssrc: u32, seq: u16) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: "127.0.0.1:1".parse().unwrap(),
                peer_addr: "127.0.0.1:2".parse().unwrap(),
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: AttributedPacket::new(Packet::Rtp(rtc::rtp::packet::Packet {
                header: Header {
                    version: 2,
                    ssrc,
                    sequence_number: seq,
                    payload_type: 96,
                    ..Default::default()
                },
                payload: Bytes::from_static(b"frame"),
            })),
        }
    }

    fn ssrc_and_seq(p: &TaggedPacket) -> (u32, u16) {
        match &p.message.packet {
            Packet::Rtp(rtp) => (rtp.header.ssrc, rtp.header.sequence_number),
            other => panic!("not RTP: {other:?}"),
        }
    }

    #[test]
    fn video_is_duplicated_on_the_rogue_ssrc_and_audio_is_not() {
        let sent = Arc::new(AtomicU64::new(0));
        let mut tap = RogueSsrcTap::new(0xbad, sent.clone());
        tap.bind_local_stream(&info(10, "audio/opus"));
        tap.bind_local_stream(&info(20, "video/VP8"));
        tap.handle_write(rtp(10, 1)).unwrap();
        tap.handle_write(rtp(20, 7)).unwrap();
        tap.handle_write(rtp(30, 9)).unwrap(); // not a bound stream: left alone
        let out: Vec<(u32, u16)> = std::iter::from_fn(|| tap.poll_write())
            .map(|p| ssrc_and_seq(&p))
            .collect();
        assert_eq!(out, vec![(10, 1), (20, 7), (0xbad, 7), (30, 9)]);
        assert_eq!(sent.load(Ordering::Relaxed), 1);

        tap.unbind_local_stream(&info(20, "video/VP8"));
        tap.handle_write(rtp(20, 8)).unwrap();
        assert_eq!(tap.poll_write().map(|p| ssrc_and_seq(&p)), Some((20, 8)));
        assert!(tap.poll_write().is_none());
    }
}
