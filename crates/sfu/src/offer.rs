//! Offer: what a client's SDP offer asks for, checked before any WebRTC state is created.
//!
//! A bad offer is refused here with an [`OfferError`] that says what is wrong, so nothing is
//! left behind. A good one yields an [`OfferSummary`]: the m-lines in order and the codecs the
//! participant's transport will be restricted to. The call's video codec is fixed by the first
//! joiner (the first codec of [`SfuConfig::video_codecs`](crate::SfuConfig) its offer contains);
//! later joiners must offer it, so both legs carry the same codec and nothing is transcoded.

use std::io::Cursor;

use policy::MediaKind;
use sdp::description::media::MediaDescription;
use sdp::description::session::SessionDescription;

use crate::config::VideoCodec;
use crate::error::OfferError;

/// Largest SDP offer accepted, in bytes. Browser offers are 3-8 KB.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Most audio m-lines in a one-to-one call offer (the microphone).
pub const MAX_AUDIO_MLINES: usize = 1;
/// Most video m-lines (camera, screen).
pub const MAX_VIDEO_MLINES: usize = 2;

/// One m-line of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MLine {
    /// Its mid.
    pub mid: String,
    /// Its kind.
    pub kind: MediaKind,
    /// Position among the m-lines of the same kind (0 = first audio / first video).
    pub kind_index: u8,
}

/// A codec as negotiated for one participant's leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegCodec {
    /// The payload type the participant's offer uses for it.
    pub payload_type: u8,
    /// The `a=fmtp` line from the offer, verbatim.
    pub fmtp: String,
}

/// The call's video codec, fixed by the first joiner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallVideoCodec {
    /// The codec.
    pub codec: VideoCodec,
    /// Its fmtp as the first joiner offered it (H.264 profile, VP9 profile).
    pub fmtp: String,
}

/// What a valid offer asks for.
#[derive(Debug, Clone)]
pub struct OfferSummary {
    /// The m-lines, in offer order.
    pub mlines: Vec<MLine>,
    /// Opus as this participant offered it, if the offer has audio.
    pub audio: Option<LegCodec>,
    /// The call's video codec as this participant offered it, if the offer has video.
    pub video: Option<(CallVideoCodec, LegCodec)>,
}

/// Checks an offer and picks its codecs.
///
/// `preferences` is the server's video codec order; `call_codec` is the codec the call already
/// uses, if another participant fixed it.
pub fn inspect_offer(
    sdp_text: &str,
    preferences: &[VideoCodec],
    call_codec: Option<&CallVideoCodec>,
) -> Result<OfferSummary, OfferError> {
    if sdp_text.len() > MAX_OFFER_BYTES {
        return Err(OfferError::TooLarge {
            len: sdp_text.len(),
            max: MAX_OFFER_BYTES,
        });
    }
    let session = SessionDescription::unmarshal(&mut Cursor::new(sdp_text.as_bytes()))
        .map_err(|e| OfferError::Unparseable(e.to_string()))?;
    if session.media_descriptions.is_empty() {
        return Err(OfferError::NoMedia);
    }

    let mut mlines = Vec::with_capacity(session.media_descriptions.len());
    let (mut audio_count, mut video_count) = (0usize, 0usize);
    for (index, md) in session.media_descriptions.iter().enumerate() {
        let kind = match md.media_name.media.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            other => {
                return Err(OfferError::UnsupportedMedia {
                    index,
                    media: truncate(other),
                });
            }
        };
        let count = match kind {
            MediaKind::Audio => &mut audio_count,
            MediaKind::Video => &mut video_count,
        };
        let kind_index = *count;
        *count += 1;
        let mid = md
            .attribute("mid")
            .flatten()
            .filter(|m| !m.is_empty())
            .ok_or(OfferError::MissingMid { index })?;
        if !md.has_attribute("rtcp-mux") {
            return Err(OfferError::NoRtcpMux { mid: truncate(mid) });
        }
        mlines.push(MLine {
            mid: mid.to_owned(),
            kind,
            kind_index: kind_index as u8,
        });
    }
    for (kind, count, max) in [
        (MediaKind::Audio, audio_count, MAX_AUDIO_MLINES),
        (MediaKind::Video, video_count, MAX_VIDEO_MLINES),
    ] {
        if count > max {
            return Err(OfferError::TooManyMLines { kind, count, max });
        }
    }

    // BUNDLE: one group that covers every mid.
    let bundled: Vec<&str> = session
        .attributes
        .iter()
        .filter(|a| a.key == "group")
        .filter_map(|a| a.value.as_deref())
        .filter_map(|v| v.strip_prefix("BUNDLE"))
        .flat_map(|v| v.split_whitespace())
        .collect();
    if let Some(missing) = mlines.iter().find(|m| !bundled.contains(&m.mid.as_str())) {
        return Err(OfferError::NoBundle {
            mid: truncate(&missing.mid),
        });
    }

    let has = |key: &str| {
        session.has_attribute(key)
            || session
                .media_descriptions
                .iter()
                .all(|md| md.has_attribute(key))
    };
    if !has("ice-ufrag") || !has("ice-pwd") {
        return Err(OfferError::NoIceCredentials);
    }
    if !has("fingerprint") {
        return Err(OfferError::NoFingerprint);
    }

    let mut audio = None;
    let mut video: Option<(CallVideoCodec, LegCodec)> = None;
    for (md, mline) in session.media_descriptions.iter().zip(&mlines) {
        match mline.kind {
            MediaKind::Audio => {
                let opus = find_codec(md, |name, _| name.eq_ignore_ascii_case("opus")).ok_or_else(
                    || OfferError::NoSupportedCodec {
                        mid: truncate(&mline.mid),
                        kind: MediaKind::Audio,
                        supported: "opus".to_owned(),
                    },
                )?;
                audio.get_or_insert(opus);
            }
            MediaKind::Video => {
                let wanted = match (&video, call_codec) {
                    (Some((chosen, _)), _) => Some(chosen.clone()),
                    (None, Some(fixed)) => Some(fixed.clone()),
                    (None, None) => None,
                };
                let found = match &wanted {
                    Some(chosen) => find_codec(md, |name, fmtp| {
                        VideoCodec::from_name(name) == Some(chosen.codec)
                            && fmtp_compatible(chosen.codec, &chosen.fmtp, fmtp)
                    })
                    .map(|leg| (chosen.clone(), leg))
                    .ok_or_else(|| {
                        if call_codec.is_some() {
                            OfferError::CodecMismatch {
                                mid: truncate(&mline.mid),
                                codec: chosen.codec,
                            }
                        } else {
                            no_video_codec(&mline.mid, preferences)
                        }
                    })?,
                    None => preferences
                        .iter()
                        .find_map(|pref| {
                            find_codec(md, |name, fmtp| {
                                VideoCodec::from_name(name) == Some(*pref)
                                    && usable_fmtp(*pref, fmtp)
                            })
                            .map(|leg| {
                                (
                                    CallVideoCodec {
                                        codec: *pref,
                                        fmtp: leg.fmtp.clone(),
                                    },
                                    leg,
                                )
                            })
                        })
                        .ok_or_else(|| no_video_codec(&mline.mid, preferences))?,
                };
                if video.is_none() {
                    video = Some(found);
                }
            }
        }
    }
    Ok(OfferSummary {
        mlines,
        audio,
        video,
    })
}

fn no_video_codec(mid: &str, preferences: &[VideoCodec]) -> OfferError {
    OfferError::NoSupportedCodec {
        mid: truncate(mid),
        kind: MediaKind::Video,
        supported: preferences
            .iter()
            .map(|c| c.encoding_name())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The first codec of the m-line, in offer order, that `accept(name, fmtp)` takes.
fn find_codec(md: &MediaDescription, accept: impl Fn(&str, &str) -> bool) -> Option<LegCodec> {
    let codecs = md.codecs();
    md.media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| codecs.get(&pt))
        .find(|c| accept(&c.name, &c.fmtp))
        .map(|c| LegCodec {
            payload_type: c.payload_type,
            fmtp: c.fmtp.clone(),
        })
}

fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// Whether the SFU can forward this codec variant at all.
fn usable_fmtp(codec: VideoCodec, fmtp: &str) -> bool {
    match codec {
        VideoCodec::Vp8 => true,
        // Profile 0 only: what every VP9 decoder handles.
        VideoCodec::Vp9 => fmtp_param(fmtp, "profile-id").is_none_or(|p| p == "0"),
        // Non-interleaved mode, the one browsers use with FU-A.
        VideoCodec::H264 => fmtp_param(fmtp, "packetization-mode") == Some("1"),
    }
}

/// Whether `offered` can carry what a participant with `chosen` sends, and the reverse.
fn fmtp_compatible(codec: VideoCodec, chosen: &str, offered: &str) -> bool {
    if !usable_fmtp(codec, offered) {
        return false;
    }
    match codec {
        VideoCodec::Vp8 | VideoCodec::Vp9 => true,
        VideoCodec::H264 => {
            // Same profile (profile_idc + constraint flags): levels may differ.
            let profile = |f: &str| {
                fmtp_param(f, "profile-level-id")
                    .filter(|p| p.len() == 6)
                    .map(|p| p[..4].to_ascii_lowercase())
            };
            profile(chosen) == profile(offered)
        }
    }
}

/// Keeps error messages short whatever a hostile offer contains.
fn truncate(s: &str) -> String {
    const MAX: usize = 32;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Chrome-like offer with audio, video and optionally a second video m-line.
    pub(crate) fn offer(video_codecs: &[(&str, u8, &str)], screen: bool) -> String {
        let mut mids = vec!["0", "1"];
        if screen {
            mids.push("2");
        }
        let mut s = format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n\
             a=msid-semantic: WMS\r\n",
            mids.join(" ")
        );
        let common = "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
                      a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 \
                      00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
                      a=setup:actpass\r\n";
        s.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n");
        s.push_str(common);
        s.push_str("a=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n");
        let pts: Vec<String> = video_codecs
            .iter()
            .map(|(_, pt, _)| pt.to_string())
            .collect();
        let mut video = format!("m=video 9 UDP/TLS/RTP/SAVPF {}\r\n{common}", pts.join(" "));
        video.push_str("a=mid:MID\r\na=sendrecv\r\na=rtcp-mux\r\n");
        for (name, pt, fmtp) in video_codecs {
            video.push_str(&format!("a=rtpmap:{pt} {name}/90000\r\n"));
            if !fmtp.is_empty() {
                video.push_str(&format!("a=fmtp:{pt} {fmtp}\r\n"));
            }
        }
        s.push_str(&video.replace("MID", "1"));
        if screen {
            s.push_str(&video.replace("MID", "2"));
        }
        s
    }

    #[test]
    fn first_joiner_fixes_the_preferred_codec() {
        let o = offer(
            &[
                (
                    "H264",
                    102,
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                ),
                ("VP8", 96, ""),
            ],
            true,
        );
        let s = inspect_offer(&o, &[VideoCodec::Vp8, VideoCodec::H264], None).unwrap();
        assert_eq!(s.mlines.len(), 3);
        assert_eq!(s.mlines[2].kind_index, 1);
        let (call, leg) = s.video.unwrap();
        assert_eq!(call.codec, VideoCodec::Vp8);
        assert_eq!(leg.payload_type, 96);
        assert_eq!(s.audio.unwrap().payload_type, 111);

        let s = inspect_offer(&o, &[VideoCodec::H264, VideoCodec::Vp8], None).unwrap();
        assert_eq!(s.video.unwrap().0.codec, VideoCodec::H264);
    }

    #[test]
    fn second_joiner_must_offer_the_call_codec() {
        let fixed = CallVideoCodec {
            codec: VideoCodec::H264,
            fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
        };
        let vp8_only = offer(&[("VP8", 96, "")], false);
        let err = inspect_offer(&vp8_only, &[VideoCodec::Vp8], Some(&fixed)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m-line \"1\" does not offer H264, the codec the call already uses"
        );
        let h264 = offer(
            &[("H264", 125, "packetization-mode=1;profile-level-id=42e034")],
            false,
        );
        let (_, leg) = inspect_offer(&h264, &[VideoCodec::Vp8], Some(&fixed))
            .unwrap()
            .video
            .unwrap();
        assert_eq!(leg.payload_type, 125);
    }

    #[test]
    fn bad_offers_say_what_is_wrong() {
        let good = offer(&[("VP8", 96, "")], false);
        let cases: Vec<(String, &str)> = vec![
            ("hello".into(), "not parseable as SDP"),
            (
                good.replace("a=group:BUNDLE 0 1\r\n", ""),
                "no a=group:BUNDLE",
            ),
            (good.replacen("a=rtcp-mux\r\n", "", 1), "lacks a=rtcp-mux"),
            (
                good.replace("a=fingerprint", "a=fingerprintx"),
                "no a=fingerprint",
            ),
            (
                good.replace("a=ice-pwd", "a=ice-pwdx"),
                "no a=ice-ufrag / a=ice-pwd",
            ),
            (
                good.replace("VP8/90000", "AV1/90000"),
                "offers none of the supported codecs",
            ),
            (
                good.replace("opus/48000", "PCMU/8000"),
                "offers none of the supported codecs: opus",
            ),
            (
                good.replace("m=video", "m=application"),
                "only audio and video",
            ),
            ("x".repeat(MAX_OFFER_BYTES + 1), "larger than"),
        ];
        for (sdp, want) in cases {
            let err = inspect_offer(&sdp, &[VideoCodec::Vp8], None).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want:?}"
            );
        }
    }

    #[test]
    fn too_many_video_mlines_are_refused() {
        let o = offer(&[("VP8", 96, "")], true);
        let third = o
            .split("m=video")
            .nth(1)
            .map(|v| format!("m=video{v}").replace("a=mid:1", "a=mid:3"))
            .unwrap();
        let o = format!("{o}{third}").replace("BUNDLE 0 1 2", "BUNDLE 0 1 2 3");
        let err = inspect_offer(&o, &[VideoCodec::Vp8], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "offer has 3 video m-lines; at most 2 are supported"
        );
    }
}
