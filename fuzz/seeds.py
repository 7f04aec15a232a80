#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ from real inputs: a Chrome-like offer,
STUN binding requests, RTP packets (Opus, VP8 keyframes, header extensions with mid and rid,
padding, CSRCs) and RTCP (SR, RR, SDES, BYE, PLI, FIR, NACK, REMB, transport-cc), and the
policy config examples of crates/policy. Deterministic; run it again after changing a
target's input format. The formats are those of crates/sfu/src/fuzzing.rs."""

import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ----- building blocks ---------------------------------------------------------------------

MAGIC = bytes([0x21, 0x12, 0xA4, 0x42])


def stun(msg_type, attrs, txid=b"\x07" * 12):
    body = b""
    for t, v in attrs:
        body += struct.pack(">HH", t, len(v)) + v
        body += b"\x00" * (-len(v) % 4)
    return struct.pack(">HH", msg_type, len(body)) + MAGIC + txid + body


def stun_request(user, extra=()):
    attrs = [(0x0006, user.encode())]
    attrs += [
        (0x0024, struct.pack(">I", 0x6E7F1EFF)),  # PRIORITY
        (0x802A, b"\x01" * 8),  # ICE-CONTROLLING
    ]
    attrs += list(extra)
    return stun(0x0001, attrs)


def rtp(pt, seq, ts, ssrc, payload, marker=False, csrc=(), ext=None, padding=0):
    """ext: (profile, [(id, bytes)]) for one-/two-byte, or (profile, raw) for RFC 3550."""
    b0 = 0x80 | len(csrc)
    if padding:
        b0 |= 0x20
    head = b""
    if ext is not None:
        b0 |= 0x10
        profile, items = ext
        if isinstance(items, bytes):
            body = items
        else:
            body = b""
            for i, v in items:
                if profile == 0xBEDE:
                    body += bytes([(i << 4) | (len(v) - 1)]) + v
                else:
                    body += bytes([i, len(v)]) + v
            body += b"\x00" * (-len(body) % 4)
        head = struct.pack(">HH", profile, len(body) // 4) + body
    out = bytes([b0, (0x80 if marker else 0) | pt]) + struct.pack(">HII", seq, ts, ssrc)
    for c in csrc:
        out += struct.pack(">I", c)
    out += head + payload
    if padding:
        out += b"\x00" * (padding - 1) + bytes([padding])
    return out


def rtcp(pt, count, body):
    assert len(body) % 4 == 0
    return bytes([0x80 | count, pt]) + struct.pack(">H", len(body) // 4) + body


def report_block(ssrc, lost=0x01000002, seq=0x00010203, jitter=7, lsr=0x11223344, dlsr=5):
    return struct.pack(">IIIIII", ssrc, lost, seq, jitter, lsr, dlsr)


SENDER_SSRC = 0x1000_0000
MEDIA_SSRC = 0x1000_0001
SR = rtcp(200, 1, struct.pack(">IQIII", SENDER_SSRC, 0xE5A1_0000_8000_0000, 123456, 50, 6000)
          + report_block(MEDIA_SSRC))
RR = rtcp(201, 1, struct.pack(">I", SENDER_SSRC) + report_block(MEDIA_SSRC))
SDES = rtcp(202, 1, struct.pack(">I", SENDER_SSRC) + b"\x01\x0afuzzcname1" + b"\x00" * 4)
BYE = rtcp(203, 1, struct.pack(">I", SENDER_SSRC) + b"\x03bye")
PLI = rtcp(206, 1, struct.pack(">II", SENDER_SSRC, MEDIA_SSRC))
FIR = rtcp(206, 4, struct.pack(">II", SENDER_SSRC, 0) + struct.pack(">IB3x", MEDIA_SSRC, 3))
NACK = rtcp(205, 1, struct.pack(">IIHH", SENDER_SSRC, MEDIA_SSRC, 1000, 0x0005))
REMB = rtcp(206, 15, struct.pack(">II", SENDER_SSRC, 0) + b"REMB"
            + bytes([1, 0x0C | 0x00, 0x35, 0x0D]) + struct.pack(">I", MEDIA_SSRC))
# transport-cc feedback: base seq 10, 3 packets, one run-length chunk, three 1-byte deltas.
TWCC = rtcp(205, 15, struct.pack(">II", SENDER_SSRC, MEDIA_SSRC)
            + struct.pack(">HH", 10, 3) + bytes([0, 0, 1, 1]) + struct.pack(">H", 0x2003)
            + bytes([4, 4, 4]) + b"\x00" * 3)
XR = rtcp(207, 0, struct.pack(">I", SENDER_SSRC) + bytes([4, 0, 0, 2]) + struct.pack(">Q", 1))

VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + bytes(range(40))
VP8_KEY_EXT = bytes([0x90, 0xE0, 0x80, 0x01, 0x05, 0x20, 0x00, 0x9D, 0x01, 0x2A]) + bytes(30)
OPUS = bytes([0x78]) + bytes(range(60))
H264_IDR = bytes([0x65, 0x88, 0x84]) + bytes(20)
H264_STAP = bytes([0x78, 0x00, 0x04, 0x67, 0x42, 0xC0, 0x1F, 0x00, 0x02, 0x68, 0xCE])

RTP_PACKETS = {
    "opus-level-mid": rtp(111, 1000, 960, SENDER_SSRC, OPUS, marker=True,
                          ext=(0xBEDE, [(1, b"\x9a"), (4, b"0")])),
    "vp8-key-mid-rid": rtp(96, 5000, 3000, MEDIA_SSRC, VP8_KEY,
                           ext=(0xBEDE, [(4, b"1"), (10, b"h"), (3, b"\x00\x05")])),
    "vp8-rrid-two-byte": rtp(97, 5001, 3000, 0x2002, VP8_KEY_EXT,
                             ext=(0x1000, [(11, b"h"), (10, b"m"), (40, b"x" * 20)])),
    "rfc3550-ext": rtp(96, 7, 9, 0x3003, VP8_KEY, ext=(0xABCD, b"\x01\x02\x03\x04")),
    "csrc-padding": rtp(96, 65535, 0xFFFFFFFF, 0x4004, VP8_KEY, csrc=(1, 2, 3), padding=4),
    "h264-idr": rtp(102, 1, 90000, 0x5005, H264_IDR, marker=True),
    "h264-stap": rtp(102, 2, 90000, 0x5005, H264_STAP),
    "vp9-key": rtp(98, 3, 90000, 0x6006, bytes([0x08, 0x80, 0x01]) + bytes(10)),
    "one-byte-padding-ext": rtp(111, 4, 5, 0x7007, OPUS,
                                ext=(0xBEDE, [(1, b"\x10")])),
}
RTCP_PACKETS = {
    "sr-sdes": SR + SDES,
    "rr-bye": RR + BYE,
    "pli": PLI,
    "fir": FIR,
    "nack": NACK,
    "remb": REMB,
    "twcc": TWCC,
    "xr": XR,
    "rr-pli-nack": RR + PLI + NACK,
}


# ----- demux -------------------------------------------------------------------------------

def demux_seeds():
    req = stun_request("srv1:cli")
    write("demux", "stun-request", req)
    write("demux", "stun-response", stun(0x0101, [(0x0020, b"\x00\x01\x11\x22\x33\x44\x55\x66")]))
    write("demux", "dtls-client-hello", bytes([22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50])
          + bytes([1, 0, 0, 38, 0, 0, 0, 0, 0, 0, 0, 38, 254, 253]) + bytes(36))
    write("demux", "rtp", RTP_PACKETS["opus-level-mid"])
    write("demux", "rtcp", SR + SDES)
    # Op streams: route (op % 6 in 0..=1) a STUN request, bind (3), route RTP, unbind (4),
    # add a ufrag (2), remove (5).
    ops = b""
    ops += bytes([0]) + bytes([len(req)]) + req
    ops += bytes([3])
    pkt = RTP_PACKETS["vp8-key-mid-rid"][:200]
    ops += bytes([1]) + bytes([len(pkt)]) + pkt
    ops += bytes([2, 1])
    ops += bytes([4])
    ops += bytes([41, 0])  # remove (41 % 6 == 5), participant 2, address 1
    req2 = stun_request("abcd:x")
    ops += bytes([12]) + bytes([len(req2)]) + req2  # route from address 1
    write("demux", "ops", ops)


# ----- rtp_parse ---------------------------------------------------------------------------

def rtp_parse_seeds():
    for name, pkt in list(RTP_PACKETS.items()) + list(RTCP_PACKETS.items()):
        body = struct.pack(">H", len(pkt)) + pkt + bytes([20, 0])
        write("rtp_parse", name, bytes([0x02]) + struct.pack(">HI", 100, 1000) + body)
    # A stream through one munger: a switch of source, a reordered packet, a resync.
    seq = b""
    for i, (ssrc, s) in enumerate([(1, 10), (1, 11), (1, 13), (1, 12), (2, 500), (1, 14)]):
        pkt = rtp(96, s, s * 3000, ssrc, VP8_KEY if i == 0 else b"\x00\x01abc")
        seq += struct.pack(">H", len(pkt)) + pkt + bytes([33, 1 if i == 5 else 0])
    write("rtp_parse", "munger-stream", bytes([0x00]) + struct.pack(">HI", 65530, 0xFFFFFF00) + seq)


# ----- sdp_offer ---------------------------------------------------------------------------

def chrome_offer():
    src = open(os.path.join(ROOT, "crates/sfu/src/fuzzing.rs")).read()
    m = re.search(r'pub const CHROME_OFFER: &str = "(.*?)";', src, re.S)
    text = m.group(1)
    text = re.sub(r"\\\n", "", text)  # line continuations
    return text.replace("\\r\\n", "\r\n")


def sdp_seeds():
    chrome = chrome_offer()
    assert chrome.startswith("v=0\r\n") and chrome.endswith("\r\n"), repr(chrome[:40])
    write("sdp_offer", "chrome", b"\x00" + chrome.encode())
    write("sdp_offer", "chrome-second-joiner", bytes([0x60]) + chrome.encode())
    write("sdp_offer", "chrome-customer-initiates", bytes([0x30]) + chrome.encode())
    h264_only = re.sub(r"m=video 9 UDP/TLS/RTP/SAVPF [0-9 ]+", "m=video 9 UDP/TLS/RTP/SAVPF 102 103", chrome)
    write("sdp_offer", "h264-only-second", bytes([0x42]) + h264_only.encode())
    audio_only = chrome.split("m=video")[0].replace("BUNDLE 0 1", "BUNDLE 0")
    write("sdp_offer", "audio-only", b"\x00" + audio_only.encode())
    video = "m=video" + chrome.split("m=video")[1]
    screen = video.replace("a=mid:1", "a=mid:2").replace("ssrc:2001", "ssrc:3001").replace("ssrc:2002", "ssrc:3002").replace("FID 2001 2002", "FID 3001 3002")
    write("sdp_offer", "camera-and-screen", b"\x00" + (chrome.replace("BUNDLE 0 1", "BUNDLE 0 1 2") + screen).encode())
    simulcast = chrome.replace(
        "a=rtpmap:45 AV1/90000\r\n",
        "a=rtpmap:45 AV1/90000\r\na=rid:h send\r\na=rid:m send\r\na=rid:q send\r\na=simulcast:send h;m;q\r\n")
    write("sdp_offer", "simulcast", b"\x00" + simulcast.encode())
    firefox = (
        "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 3146225487232427453 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "a=fingerprint:sha-256 5B:D3:8E:66:0E:7D:D3:F3:8E:E6:80:28:19:FC:55:AD:58:5D:B9:3D:A8:DE:45:4A:E7:87:02:F8:A0:C5:DC:97\r\n"
        "a=group:BUNDLE 0 1\r\na=ice-options:trickle\r\na=msid-semantic:WMS *\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\n"
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
        "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1\r\na=fmtp:101 0-15\r\n"
        "a=ice-pwd:0123456789abcdef0123456789abcdef\r\na=ice-ufrag:4a1b2c3d\r\na=mid:0\r\n"
        "a=msid:{a} {b}\r\na=rtcp-mux\r\na=rtpmap:109 opus/48000/2\r\na=rtpmap:9 G722/8000/1\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=setup:actpass\r\na=ssrc:2655508255 cname:{c}\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\n"
        "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
        "a=extmap:5 urn:ietf:params:rtp-hdrext:toffset\r\na=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
        "a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1\r\n"
        "a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1\r\na=fmtp:120 max-fs=12288;max-fr=60\r\n"
        "a=fmtp:124 apt=120\r\na=fmtp:121 max-fs=12288;max-fr=60\r\na=fmtp:125 apt=121\r\na=fmtp:127 apt=126\r\na=fmtp:98 apt=97\r\n"
        "a=ice-pwd:0123456789abcdef0123456789abcdef\r\na=ice-ufrag:4a1b2c3d\r\na=mid:1\r\na=msid:{a} {d}\r\n"
        "a=rtcp-fb:120 nack\r\na=rtcp-fb:120 nack pli\r\na=rtcp-fb:120 ccm fir\r\na=rtcp-fb:120 goog-remb\r\na=rtcp-fb:120 transport-cc\r\n"
        "a=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=rtpmap:121 VP9/90000\r\n"
        "a=rtpmap:125 rtx/90000\r\na=rtpmap:126 H264/90000\r\na=rtpmap:127 rtx/90000\r\na=rtpmap:97 H264/90000\r\na=rtpmap:98 rtx/90000\r\n"
        "a=setup:actpass\r\na=ssrc:1587203395 cname:{c}\r\na=ssrc:3208941297 cname:{c}\r\na=ssrc-group:FID 1587203395 3208941297\r\n"
    )
    write("sdp_offer", "firefox", b"\x00" + firefox.encode())
    write("sdp_offer", "firefox-second-joiner", bytes([0x41]) + firefox.encode())


# ----- rtp_ingress -------------------------------------------------------------------------

def ingress_rtp_op(client, kind, flags, ssrc_pick, seq, ts, csrc=(), profile_extra=b"",
                   exts=(), payload=b"", marker=True):
    """Op 4: flags, pick_ssrc, [pt], seq, ts, csrcs, [profile], n, exts, payload len, payload, marker."""
    op = (client << 7) | kind
    out = bytes([op, flags]) + ssrc_pick
    if flags & 0x03 >= 2:
        out += bytes([0x60])
    out += struct.pack(">HI", seq, ts)
    for c in csrc:
        out += struct.pack(">I", c)
    if flags >> 4 & 0x03:
        if flags >> 4 & 0x03 == 3:
            out += profile_extra
        out += bytes([len(exts)])
        for which, value in exts:
            out += bytes([which])
            if which & 0x40:
                out += bytes([0])
            else:
                out += bytes([len(value)]) + value
    out += struct.pack(">H", len(payload)) + payload
    out += bytes([1 if marker else 0])
    return out


def ingress_seeds():
    OWN_AUDIO, OWN_VIDEO, SFU0, OTHER, ANY = b"\x00", b"\x01", b"\x02\x00", b"\x04\x00", b"\x05\x12\x34\x56\x78"
    audio = bytes([9])
    video_key = bytes([10, 1, 1])
    advance = bytes([11, 20])
    write("rtp_ingress", "real-media", audio + video_key + advance + bytes([0x80 | 9]) + bytes([0x80 | 10, 0, 0]))
    # Raw garbage from the client's own address and from strangers.
    for i, (name, pkt) in enumerate(list(RTP_PACKETS.items())[:4] + list(RTCP_PACKETS.items())[:3]):
        write("rtp_ingress", "raw-own-" + name, bytes([0]) + struct.pack(">H", len(pkt)) + pkt + audio)
    req = stun_request("nosuch:cli")
    write("rtp_ingress", "raw-stranger-stun", bytes([2]) + struct.pack(">H", len(req)) + req)
    write("rtp_ingress", "stun-real-ufrag-stranger", bytes([3, 4]) + b"abcd" + bytes([12])
          + struct.pack(">HH", 0x0024, 4) + b"\x6e\x7f\x1e\xff" + struct.pack(">HH", 0x0025, 0) + b"\x09" * 12)
    write("rtp_ingress", "stun-real-ufrag-own", bytes([0x13, 4]) + b"abcd" + bytes([8])
          + struct.pack(">HH", 0x8008, 4) + b"\x00" * 4 + b"\x01" * 12)
    dtls = bytes([21, 254, 253, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0])
    write("rtp_ingress", "dtls-alert-epoch0-own", bytes([0]) + struct.pack(">H", len(dtls)) + dtls + audio)
    # SRTP-protected RTP: own audio with extensions, a new SSRC with mid+rid (simulcast
    # probing), two-byte extensions, padding and CSRCs, a VP8 keyframe on the video SSRC.
    write("rtp_ingress", "srtp-own-audio-ext", ingress_rtp_op(0, 4, 0x10, OWN_AUDIO, 0x80, 960,
                                                              exts=[(0, b"\x9a"), (1, b"0")], payload=OPUS))
    write("rtp_ingress", "srtp-new-ssrc-mid-rid", ingress_rtp_op(1, 5, 0x51, ANY, 100, 3000,
                                                                 exts=[(0, b"1"), (2, b"h"), (0x42, b"")], payload=VP8_KEY)
          + ingress_rtp_op(1, 5, 0x51, ANY, 101, 3000, exts=[(0, b"1"), (2, b"h")], payload=VP8_KEY))
    write("rtp_ingress", "srtp-two-byte-csrc-padding", ingress_rtp_op(0, 6, 0xA5 | 0x80, OWN_VIDEO, 0x81, 6000,
                                                                      csrc=(7,), exts=[(3, b"x" * 18)], payload=VP8_KEY))
    write("rtp_ingress", "srtp-rfc3550-ext", ingress_rtp_op(0, 4, 0x31, OTHER, 9, 9, profile_extra=b"\xab\xcd",
                                                            exts=[(0x80, b"\x01\x02\x03\x04")], payload=b"\x00" * 8))
    write("rtp_ingress", "srtp-own-video-key", ingress_rtp_op(1, 4, 0x41, OWN_VIDEO, 0x81, 9000, payload=b"\x00" * 300)
          + audio)
    # RTCP through SRTCP: raw compound packets, and typed ones against real SSRCs.
    for name in ["sr-sdes", "rr-pli-nack", "twcc", "remb", "fir", "xr", "rr-bye"]:
        pkt = RTCP_PACKETS[name]
        write("rtp_ingress", "srtcp-raw-" + name, bytes([7]) + struct.pack(">H", len(pkt)) + pkt + audio)
    for kind, extra in [(0, b"\x02\x00\x05\x03\xe8\x00\xff"), (1, b"\x07"), (2, b"\x00\x00\x00\x00"),
                        (3, b"\x10" + b"\x00\x00\x00\x05" + b"\x00\x00\x10\x00" + b"\x00" * 12)]:
        write("rtp_ingress", "srtcp-typed-%d" % kind, bytes([0x80 | 8]) + OWN_AUDIO + b"\x02\x00" + bytes([kind]) + extra)
    write("rtp_ingress", "camera-toggle", bytes([0x80 | 12, 0]) + video_key + bytes([0x80 | 12, 1, 0x80 | 10, 1, 2]))
    write("rtp_ingress", "pli", bytes([14]) + SFU0 + bytes([0x8E]) + SFU0 + advance)


# ----- policy_config -----------------------------------------------------------------------

def policy_seeds():
    write("policy_config", "documented", """default_profile = "showroom"

[profiles.showroom]
base = "merchant-video"
customer.accepted_sources = ["microphone", "camera_rear"]
customer.camera_caps.max_frame_rate = 15

[profiles.audio-only]
recording_allowed = true
""")
    write("policy_config", "full", """[profiles.full]
base = "audio-only"
recording_allowed = true

[profiles.full.merchant]
accepted_sources = ["microphone", "camera_front", "screen"]
camera_at_join = "on"
camera_control = "nobody"
camera_caps = { max_width = 640, max_height = 480, max_frame_rate = 24 }
screen_caps = { max_width = 2560, max_height = 1440, max_frame_rate = 5 }

[profiles.full.customer]
accepted_sources = ["microphone", "camera_rear", "camera_front"]
camera_at_join = "off"
camera_control = "self_only"

[eligibility]
min_rating = 4.5
min_reply_rate = 0.9
require_opt_in = true
on_ineligible = "refuse"
""")
    write("policy_config", "calls", """[profiles.quiet]
merchant.accepted_sources = ["microphone", "camera_front"]

[eligibility]
min_rating = nan
on_ineligible = "audio_only"

[[calls]]
profile = "quiet"
override = { recording_allowed = true, customer = { camera_caps = { max_width = 640 } } }
standing = { rating = 4.8, reply_rate = 0.97, video_opt_in = true }

[[calls]]
override.merchant.camera_at_join = "off"
standing = { rating = nan, reply_rate = 2.0, video_opt_in = false }
""")
    write("policy_config", "invalid", """[profiles.peek]
customer.camera_at_join = "on"
[profiles.x]
customer.accepted_sources = ["microphone", "camera_front"]
customer.camera_control = "nobody"
""")


def dictionaries():
    d = os.path.join(HERE, "dict")
    os.makedirs(d, exist_ok=True)
    sdp_tokens = ["v=0", "o=- ", "s=-", "t=0 0", "m=audio ", "m=video ", "m=application ",
                  " UDP/TLS/RTP/SAVPF ", "c=IN IP4 0.0.0.0", "a=group:BUNDLE ", "a=mid:",
                  "a=rtcp-mux", "a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:sha-256 ",
                  "a=setup:actpass", "a=sendrecv", "a=recvonly", "a=sendonly", "a=inactive",
                  "a=rtpmap:", " opus/48000/2", " VP8/90000", " VP9/90000", " H264/90000",
                  " rtx/90000", "a=fmtp:", "packetization-mode=1", "profile-level-id=42e01f",
                  "profile-id=0", "apt=", "a=rtcp-fb:", " nack pli", " ccm fir", "a=extmap:",
                  "urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                  "a=ssrc:", " cname:", "a=ssrc-group:FID ", "a=rid:", " send", "a=simulcast:send ",
                  "a=msid:", "a=candidate:", " typ host", "a=end-of-candidates", "\\x0d\\x0a"]
    with open(os.path.join(d, "sdp.dict"), "w") as f:
        for t in sdp_tokens:
            f.write('"%s"\n' % t.replace('"', '\\"'))
    toml_tokens = ["[profiles.", "]", "base = ", "\"rear-camera-off\"", "\"merchant-video\"",
                   "\"audio-only\"", "default_profile = ", "merchant.", "customer.",
                   "accepted_sources = ", "[\"microphone\", \"camera_rear\"]", "\"camera_front\"",
                   "\"screen\"", "camera_at_join = ", "\"on\"", "\"off\"", "camera_control = ",
                   "\"self_only\"", "\"nobody\"", "camera_caps", "screen_caps", "max_width = ",
                   "max_height = ", "max_frame_rate = ", "recording_allowed = true", "[eligibility]",
                   "min_rating = ", "min_reply_rate = ", "require_opt_in = ", "on_ineligible = ",
                   "\"refuse\"", "\"audio_only\"", "[[calls]]", "profile = ", "override", "standing = ",
                   "rating = ", "reply_rate = ", "video_opt_in = ", "nan", "inf", "-0.0", "4294967295"]
    with open(os.path.join(d, "toml.dict"), "w") as f:
        for t in toml_tokens:
            f.write('"%s"\n' % t.replace("\\", "\\\\").replace('"', '\\"'))


if __name__ == "__main__":
    demux_seeds()
    rtp_parse_seeds()
    sdp_seeds()
    ingress_seeds()
    policy_seeds()
    dictionaries()
