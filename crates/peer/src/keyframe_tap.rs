//! KeyframeRequestTap: the interceptor that lets inbound keyframe requests (RTCP PLI and FIR)
//! reach the application.
//!
//! In webrtc-rs 0.21 inbound RTCP ends at the terminus of the interceptor chain
//! (`rtc-interceptor` `src/noop.rs`, `NoopInterceptor::handle_read`) unless an interceptor marks
//! it with [`Attribute::DeliverToApplication`]. Marked packets go on to the endpoint handler,
//! which tags them with the track id that owns the first packet's destination SSRC, trying the
//! receivers and then the *senders* (`rtc` `src/peer_connection/handler/endpoint.rs`,
//! `find_track_id`). The async driver then routes a sender's RTCP to its `TrackLocal`
//! (`webrtc` `src/peer_connection/driver.rs`, `RTCMessage::RtcpPacket`), where
//! `TrackLocal::poll` yields `TrackLocalEvent::OnRtcpPacket`.
//!
//! This tap sits application-most (after every built-in interceptor has seen the packet), keeps
//! only PLI and FIR and marks them; everything else stops here as it would without the tap.
//! Narrowing also makes routing follow the keyframe request: in a compound packet
//! `RR + PLI`, the RR's SSRC would otherwise decide which track gets the PLI.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio;
use rtc::shared::error::Error;

/// Slot of the tap: above [`rtc::interceptor::Slot::JitterBuffer`] (13 000), the
/// application-most built-in position.
pub(crate) const SLOT: usize = 14_000;

/// See the module docs.
#[derive(Default)]
pub(crate) struct KeyframeRequestTap {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

/// The SSRCs a PLI or FIR asks a keyframe of; empty for any other RTCP packet.
pub(crate) fn keyframe_request_targets(packet: &dyn rtcp::Packet) -> Vec<u32> {
    let any = packet.as_any();
    if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
        vec![pli.media_ssrc]
    } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
        fir.fir.iter().map(|entry| entry.ssrc).collect()
    } else {
        Vec::new()
    }
}

fn is_keyframe_request(packet: &dyn rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            packets.retain(|p| is_keyframe_request(p.as_ref()));
            if packets.is_empty() {
                // Not ours to act on; the interceptors before us already have.
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
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

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
