//! SDP candidate rewriting: point a WebRTC client at a relay instead of the SFU.
//!
//! A client sends its media to the address in the remote description's candidates; to put a
//! [`Relay`](crate::Relay) in the path, rewrite the SFU answer's UDP host candidates
//! (`a=candidate:<foundation> <component> udp <priority> <ip> <port> typ host ...`) to the
//! relay's address before the client applies it. ICE still works end to end: the client's
//! checks reach the SFU through the relay, and the SFU answers the relay's upstream socket,
//! whose replies the relay sends back from the address the client targeted.

use std::net::{IpAddr, SocketAddr};

/// The parsed address part of a candidate line.
struct Candidate<'a> {
    /// Fields of the line after `a=candidate:`.
    fields: Vec<&'a str>,
}

impl<'a> Candidate<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let body = line.strip_prefix("a=candidate:")?;
        let fields: Vec<&str> = body.split(' ').collect();
        // foundation component transport priority address port "typ" type
        (fields.len() >= 8 && fields[6] == "typ").then_some(Candidate { fields })
    }

    fn is_udp_host(&self) -> bool {
        self.fields[2].eq_ignore_ascii_case("udp") && self.fields[7] == "host"
    }

    fn addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.fields[4].parse().ok()?;
        let port: u16 = self.fields[5].parse().ok()?;
        Some(SocketAddr::new(ip, port))
    }
}

/// Splits `sdp` into lines, keeping each line's ending.
fn lines_with_endings(sdp: &str) -> impl Iterator<Item = (&str, &str)> {
    sdp.split_inclusive('\n').map(|l| {
        let body = l.trim_end_matches(['\r', '\n']);
        (body, &l[body.len()..])
    })
}

/// The addresses of the UDP host candidates in `sdp`, in order.
pub fn host_candidates(sdp: &str) -> Vec<SocketAddr> {
    lines_with_endings(sdp)
        .filter_map(|(line, _)| Candidate::parse(line))
        .filter(Candidate::is_udp_host)
        .filter_map(|c| c.addr())
        .collect()
}

/// Rewrites every UDP host candidate of `sdp` to `to` (address and port); other lines,
/// other candidates and line endings are kept as they are.
pub fn rewrite_host_candidates(sdp: &str, to: SocketAddr) -> String {
    rewrite_matching(sdp, to, |_| true)
}

/// Rewrites the UDP host candidates that name `from` to `to`; useful when an answer lists
/// several addresses and only one should go through the relay.
pub fn rewrite_candidate(sdp: &str, from: SocketAddr, to: SocketAddr) -> String {
    rewrite_matching(sdp, to, |addr| addr == from)
}

fn rewrite_matching(sdp: &str, to: SocketAddr, matches: impl Fn(SocketAddr) -> bool) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for (line, ending) in lines_with_endings(sdp) {
        match Candidate::parse(line) {
            Some(c) if c.is_udp_host() && c.addr().is_some_and(&matches) => {
                let mut fields = c.fields.clone();
                let ip = to.ip().to_string();
                let port = to.port().to_string();
                fields[4] = &ip;
                fields[5] = &port;
                out.push_str("a=candidate:");
                out.push_str(&fields.join(" "));
            }
            _ => out.push_str(line),
        }
        out.push_str(ending);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\n\
        o=- 1 2 IN IP4 0.0.0.0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
        a=candidate:2 1 udp 2130706431 127.0.0.2 40000 typ host generation 0\r\n\
        a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype passive\r\n\
        a=candidate:4 1 udp 1694498815 198.18.0.1 5000 typ srflx raddr 0.0.0.0 rport 0\r\n\
        a=end-of-candidates\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
        a=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host\r\n";

    #[test]
    fn rewrites_only_udp_host_candidates() {
        let relay: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        let out = rewrite_host_candidates(ANSWER, relay);
        assert_eq!(host_candidates(&out), vec![relay, relay, relay]);
        assert!(
            out.contains("a=candidate:2 1 udp 2130706431 127.0.0.1 5555 typ host generation 0\r\n")
        );
        assert!(
            out.contains("127.0.0.1 9 typ host tcptype passive"),
            "tcp kept"
        );
        assert!(out.contains("198.18.0.1 5000 typ srflx"), "srflx kept");
        assert_eq!(out.lines().count(), ANSWER.lines().count());
        assert!(out.ends_with("typ host\r\n"));
    }

    #[test]
    fn rewrites_one_address() {
        let from: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let to: SocketAddr = "[::1]:7000".parse().unwrap();
        let out = rewrite_candidate(ANSWER, from, to);
        let hosts = host_candidates(&out);
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[1], to);
        assert_eq!(hosts[0], "127.0.0.1:40000".parse().unwrap());
    }

    #[test]
    fn leaves_garbage_alone() {
        let odd = "a=candidate:broken\na=candidate:1 1 udp 1 not-an-ip 5 typ host\n";
        let out = rewrite_host_candidates(odd, "127.0.0.1:1".parse().unwrap());
        assert_eq!(out, odd);
        assert!(host_candidates(odd).is_empty());
    }
}
