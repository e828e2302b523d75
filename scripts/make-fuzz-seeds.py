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

for t in sorted(os.listdir(seeds)):
    print(t, len(os.listdir(os.path.join(seeds, t))))
