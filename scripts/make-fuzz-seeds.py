#!/usr/bin/env python3
"""Write fuzz/seeds/<target>/ from the shared corpus (run once; the seeds are
committed so CI's fuzz runs start from real traffic, not from nothing)."""
import hashlib, os, struct, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
corpus = os.path.join(root, "..", "shared", "corpus")
seeds = os.path.join(root, "fuzz", "seeds")

def frames(path):
    data = open(path, "rb").read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return []
    link = struct.unpack(e + "I", data[20:24])[0]
    out, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        out.append((link, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out

def udp_payload(link, f):
    # Ethernet (+VLAN) / IPv4 / UDP only: enough for seeds.
    if link != 1 or len(f) < 14:
        return None
    off, et = 14, f[12:14]
    while et == b"\x81\x00" and len(f) >= off + 4:
        et, off = f[off + 2:off + 4], off + 4
    if et != b"\x08\x00" or len(f) < off + 28 or f[off + 9] != 17:
        return None
    ihl = (f[off] & 0xF) * 4
    return f[off + ihl + 8:]

def put(target, blob):
    d = os.path.join(seeds, target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, hashlib.sha1(blob).hexdigest()[:16]), "wb").write(blob)

files = []
for dp, _, fs in os.walk(corpus):
    files += [os.path.join(dp, f) for f in fs if f.endswith((".pcap", ".pcapng"))]
for path in sorted(files):
    if os.path.getsize(path) < 12000:
        put("pcap_reader", open(path, "rb").read())
    fr = frames(path)
    for link, f in fr[:6]:
        put("decode_frame", f)
    # pipeline: length-prefixed frames (see fuzz_targets/pipeline.rs), first 12 frames.
    if fr:
        lk = {1: 0, 101: 1, 113: 2, 0: 3}.get(fr[0][0], 0)
        blob = b"".join(bytes([lk]) + struct.pack("<H", len(f)) + f + b"\x01" for _, f in fr[:12])
        put("pipeline", blob[:60000])
    for link, f in fr:
        p = udp_payload(link, f)
        if not p:
            continue
        if p[:3] in (b"INV", b"SIP", b"BYE", b"ACK", b"REG", b"OPT", b"CAN", b"PRA", b"UPD"):
            put("sip_message", p)
            put("sip_stream", p)
            body = p.split(b"\r\n\r\n", 1)
            if len(body) == 2 and body[1].startswith(b"v=0"):
                put("sdp", body[1])
        elif len(p) >= 12 and p[0] >> 6 == 2:
            if 200 <= p[1] <= 207:
                put("rtp_rtcp", p)
            elif len(os.listdir(os.path.join(seeds, "rtp_rtcp"))) < 40 if os.path.isdir(os.path.join(seeds, "rtp_rtcp")) else True:
                put("rtp_rtcp", p)
# sip_headers: [count u16 LE][filler] 0xFF [tail] (see fuzz_targets/sip_headers.rs):
# real messages' headers after N copies of a filler header, around the kept
# spans (64), the re-read limit (1,024 lines) and the 64 KiB section.
def sip_headers_seed(count, filler, tail):
    put("sip_headers", struct.pack("<H", count) + filler + b"\xff" + tail)

real = []
for path in sorted(files):
    for link, f in frames(path):
        p = udp_payload(link, f)
        if p and p[:3] in (b"INV", b"SIP") and b"\r\n" in p:
            real.append(p)
        if len(real) >= 6:
            break
    if len(real) >= 6:
        break
for i, p in enumerate(real):
    tail = p.split(b"\r\n", 1)[1]
    for count, filler in [(70, b"X-Pad: padding\r\n"), (1100, b"X:1\r\n"), (5000, b"X-Pad-Long: padding\r\n")][: 1 + i % 3]:
        sip_headers_seed(count, filler, tail)
sip_headers_seed(3, b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", b"i: c@h\r\nl: 2\r\n\r\nok")
sip_headers_seed(2000, b"x: y\r\n ", b"folded\r\nCall-ID: late\r\nCSeq: 1 INVITE\r\n\r\n")

# The transports' targets (see their fuzz_targets/*.rs for the input layouts).
tls_data = os.path.join(root, "capture", "proto", "src", "tls", "testdata")

def tcp_segments(path):
    """(src port, payload) of each Ethernet/IPv4/TCP frame with data."""
    out = []
    for link, f in frames(path):
        if link != 1 or len(f) < 34 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        ihl = (f[14] & 0xF) * 4
        t = 14 + ihl
        doff = (f[t + 12] >> 4) * 4
        if f[t + doff:]:
            out.append((struct.unpack(">H", f[t:t + 2])[0], f[t + doff:]))
    return out

# tls_keylog: every key log of the unit tests.
for name in sorted(os.listdir(tls_data)):
    if name.endswith(".keys"):
        put("tls_keylog", open(os.path.join(tls_data, name), "rb").read())
# tls_records: [side][len: 2][seq delta][payload] per segment, in order.
for name in ("tls13-aes256gcm.pcap", "tls12-ecdhe-aes128gcm.pcap"):
    segs = tcp_segments(os.path.join(tls_data, name))
    client = segs[0][0] if segs else 0
    put("tls_records", b"".join(
        bytes([0 if sp == client else 1]) + struct.pack(">H", len(pl)) + b"\x00" + pl
        for sp, pl in segs))

sips = [udp_payload(l, f) for l, f in frames(os.path.join(corpus, "generated", "sipp-netns-udp-2calls.pcap"))]
sips = [p for p in sips if p and p[:3] in (b"INV", b"SIP", b"BYE", b"ACK")][:6]

def ws_frame(payload, fin=True, op=1, key=b"abcd"):
    """One client (masked) WebSocket frame."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

def segments(stream, size):
    """[len][seq delta 0][payload] per segment of at most `size` bytes."""
    return b"".join(bytes([len(stream[i:i + size]), 0]) + stream[i:i + size]
                    for i in range(0, len(stream), size))

for i, m in enumerate(sips[:3]):
    if i == 0:  # fragmented over three frames, a ping between two of them
        a, b = len(m) // 3, 2 * len(m) // 3
        stream = (ws_frame(m[:a], False) + ws_frame(b"", True, 9)
                  + ws_frame(m[a:b], False, 0) + ws_frame(m[b:], True, 0))
    else:
        stream = ws_frame(m) + ws_frame(sips[i + 1])
    put("websocket", segments(stream, 200 + 20 * i))

def data_chunk(flags, tsn, sid, ssn, payload, ppid=0):
    """An SCTP DATA chunk, padded to 4 bytes."""
    c = struct.pack(">BBHIHHI", 0, flags, 16 + len(payload), tsn, sid, ssn, ppid) + payload
    return c + b"\x00" * (-len(c) % 4)

sack = struct.pack(">BBHIIHH", 3, 0, 16, 999, 65535, 0, 0)
for i, m in enumerate(sips[:4]):
    if i % 2 == 0:  # one message in three fragments, the middle one last
        a, b = len(m) // 3, 2 * len(m) // 3
        put("sctp", data_chunk(2, 1000, i, 0, m[:a]) + data_chunk(1, 1002, i, 0, m[b:])
            + data_chunk(0, 1001, i, 0, m[a:b]))
    else:  # a SACK, then two whole messages on two streams
        put("sctp", sack + data_chunk(3, 1000, 0, 0, m) + data_chunk(3, 1001, 1, 0, sips[i + 1]))

for t in sorted(os.listdir(seeds)):
    print(t, len(os.listdir(os.path.join(seeds, t))))
