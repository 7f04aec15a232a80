//! Demux: which participant a datagram on the shared UDP socket belongs to.
//!
//! STUN binding requests are routed by the ufrag in their USERNAME (`server:client`); the
//! remote address they came from is then remembered, and every later datagram from that
//! address (DTLS, SRTP, SRTCP, more STUN) is routed by address. Ufrags are random, so no
//! internal id appears on the wire. Entries are removed when a participant leaves.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::ids::ParticipantId;
use crate::stats::DropReason;

/// What a datagram is, by its first byte (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// STUN (0..=3).
    Stun,
    /// DTLS (20..=63).
    Dtls,
    /// RTP or RTCP (128..=191).
    Rtp,
}

/// Classifies a datagram by its first byte.
pub fn classify(datagram: &[u8]) -> Option<DatagramKind> {
    match datagram.first()? {
        0..=3 => Some(DatagramKind::Stun),
        20..=63 => Some(DatagramKind::Dtls),
        128..=191 => Some(DatagramKind::Rtp),
        _ => None,
    }
}

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_HEADER: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_USE_CANDIDATE: u16 = 0x0025;

/// The local (server) part of a STUN request's USERNAME, without allocating.
pub fn stun_local_ufrag(datagram: &[u8]) -> Result<&str, DropReason> {
    let value = stun_attribute(datagram, ATTR_USERNAME)?.ok_or(DropReason::MalformedStun)?;
    let username = std::str::from_utf8(value).map_err(|_| DropReason::MalformedStun)?;
    let local = username.split(':').next().unwrap_or_default();
    if local.is_empty() {
        Err(DropReason::MalformedStun)
    } else {
        Ok(local)
    }
}

/// Whether a STUN request carries USE-CANDIDATE: the controlling agent nominates the pair it
/// came on (RFC 8445 §7.1.2). Says nothing about its integrity: the transport checks that.
pub fn stun_nominates(datagram: &[u8]) -> bool {
    matches!(stun_attribute(datagram, ATTR_USE_CANDIDATE), Ok(Some(_)))
}

/// The value of the first attribute `typ` of a STUN message, without allocating.
fn stun_attribute(datagram: &[u8], typ: u16) -> Result<Option<&[u8]>, DropReason> {
    if datagram.len() < STUN_HEADER || datagram[4..8] != STUN_MAGIC_COOKIE {
        return Err(DropReason::MalformedStun);
    }
    let body_len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if !body_len.is_multiple_of(4) || STUN_HEADER + body_len != datagram.len() {
        return Err(DropReason::MalformedStun);
    }
    let mut i = STUN_HEADER;
    while i + 4 <= datagram.len() {
        let t = u16::from_be_bytes([datagram[i], datagram[i + 1]]);
        let len = u16::from_be_bytes([datagram[i + 2], datagram[i + 3]]) as usize;
        let value = datagram
            .get(i + 4..i + 4 + len)
            .ok_or(DropReason::MalformedStun)?;
        if t == typ {
            return Ok(Some(value));
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    Ok(None)
}

/// Whether a STUN message is a request (class bits C1 and C0 both zero).
pub fn is_stun_request(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && datagram[0] & 0x01 == 0 && datagram[1] & 0x10 == 0
}

/// Routes datagrams to participants.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, ParticipantId>,
    by_addr: HashMap<SocketAddr, ParticipantId>,
}

impl Demux {
    /// Registers a participant's server-side ufrag.
    pub fn add_ufrag(&mut self, ufrag: String, participant: ParticipantId) {
        self.by_ufrag.insert(ufrag, participant);
    }

    /// Whether `ufrag` is already in use.
    pub fn has_ufrag(&self, ufrag: &str) -> bool {
        self.by_ufrag.contains_key(ufrag)
    }

    /// Routes one datagram. Returns the participant and, when the address is new to it, the
    /// address to remember (the caller records it with [`Demux::bind_addr`]).
    pub fn route(
        &self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(ParticipantId, bool), DropReason> {
        let kind = classify(datagram).ok_or(DropReason::Unclassified)?;
        if kind == DatagramKind::Stun && is_stun_request(datagram) {
            // Requests are routed by ufrag even from a known address: the address may have
            // moved to another participant (a port reused by a new client). Responses and
            // indications carry no USERNAME: they are routed by address below.
            let ufrag = stun_local_ufrag(datagram)?;
            let participant = *self.by_ufrag.get(ufrag).ok_or(DropReason::UnknownUfrag)?;
            let is_new = self.by_addr.get(&from) != Some(&participant);
            return Ok((participant, is_new));
        }
        self.by_addr
            .get(&from)
            .map(|p| (*p, false))
            .ok_or(DropReason::UnknownSource)
    }

    /// Remembers that `addr` belongs to `participant`. Returns the participant that held it
    /// before, if another did.
    pub fn bind_addr(
        &mut self,
        addr: SocketAddr,
        participant: ParticipantId,
    ) -> Option<ParticipantId> {
        self.by_addr
            .insert(addr, participant)
            .filter(|previous| *previous != participant)
    }

    /// Forgets one address.
    pub fn unbind_addr(&mut self, addr: &SocketAddr) {
        self.by_addr.remove(addr);
    }

    /// Forgets a participant: its ufrag and the given addresses.
    pub fn remove(&mut self, ufrag: &str, addrs: &[SocketAddr], participant: ParticipantId) {
        if self.by_ufrag.get(ufrag) == Some(&participant) {
            self.by_ufrag.remove(ufrag);
        }
        for a in addrs {
            if self.by_addr.get(a) == Some(&participant) {
                self.by_addr.remove(a);
            }
        }
    }

    /// (ufrags, addresses) registered: both are zero once every participant has left.
    pub fn len(&self) -> (usize, usize) {
        (self.by_ufrag.len(), self.by_addr.len())
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.by_ufrag.is_empty() && self.by_addr.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A STUN binding request with USERNAME `user` (no integrity: routing only).
    pub(crate) fn stun_request(user: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attr.extend_from_slice(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&STUN_MAGIC_COOKIE);
        m.extend_from_slice(&[7u8; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn routes_stun_by_ufrag_then_by_address() {
        let p = ParticipantId::from_raw(1);
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut d = Demux::default();
        d.add_ufrag("srv1".into(), p);
        assert_eq!(d.route(from, &stun_request("srv1:cli")), Ok((p, true)));
        assert_eq!(d.route(from, &[22, 0, 0]), Err(DropReason::UnknownSource));
        d.bind_addr(from, p);
        assert_eq!(d.route(from, &stun_request("srv1:cli")), Ok((p, false)));
        assert_eq!(d.route(from, &[22, 0, 0]), Ok((p, false)));
        assert_eq!(d.route(from, &[0x80, 0, 0]), Ok((p, false)));
        assert_eq!(
            d.route(from, &stun_request("other:cli")),
            Err(DropReason::UnknownUfrag)
        );
        d.remove("srv1", &[from], p);
        assert!(d.is_empty());
    }

    #[test]
    fn use_candidate_is_found_among_the_attributes() {
        let plain = stun_request("srv1:cli");
        assert!(!stun_nominates(&plain));
        let mut nominating = plain.clone();
        nominating.extend_from_slice(&ATTR_USE_CANDIDATE.to_be_bytes());
        nominating.extend_from_slice(&[0, 0]);
        let len = (nominating.len() - STUN_HEADER) as u16;
        nominating[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(stun_nominates(&nominating));
        assert_eq!(stun_local_ufrag(&nominating), Ok("srv1"));
        // The attribute type inside another attribute's value is not the attribute.
        let hidden = stun_request("\0\x25\0\0:x");
        assert!(!stun_nominates(&hidden));
    }

    #[test]
    fn garbage_is_classified_not_trusted() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let d = Demux::default();
        assert_eq!(d.route(from, &[]), Err(DropReason::Unclassified));
        assert_eq!(d.route(from, &[0xff; 40]), Err(DropReason::Unclassified));
        assert_eq!(
            d.route(from, &[0x00, 0x01, 0x00]),
            Err(DropReason::MalformedStun)
        );
        // A STUN response from an unknown address is routed by address, so it is refused.
        assert_eq!(
            d.route(from, &[0x01, 0x01, 0x00, 0x00]),
            Err(DropReason::UnknownSource)
        );
        let mut truncated = stun_request("srv1:cli");
        truncated.truncate(26);
        assert_eq!(d.route(from, &truncated), Err(DropReason::MalformedStun));
        let mut lying_len = stun_request("srv1:cli");
        lying_len[23] = 200; // attribute length beyond the message
        assert_eq!(d.route(from, &lying_len), Err(DropReason::MalformedStun));
    }

    proptest::proptest! {
        #[test]
        fn stun_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = stun_local_ufrag(&bytes);
            let _ = stun_nominates(&bytes);
        }
    }
}
