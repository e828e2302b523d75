#!/usr/bin/env python3
"""SIP over WebSocket (RFC 7118) between two real WebSocket stacks (the
`websockets` package, client and server in this process): N calls, each
INVITE / 100 / 180 / 200 / ACK / BYE / 200 on one connection per call.

Odd calls send the INVITE as a fragmented message (three frames, masked, as
clients must), even calls in one frame; the server sends 100 Trying and 180
Ringing with the socket corked, so both frames leave in one TCP segment.
Every message sent is logged (JSON lines: call, from client or not, text).

usage: ws_sip.py HOST PORT CALLS LOG [CERT KEY KEYLOG]
  with CERT KEY KEYLOG: WebSocket over TLS (wss), the client writing the
  key log. Prints "done" when every call ended.
"""
import asyncio
import json
import socket
import ssl
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

SDP = ("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n")


def msg(start, cid, cseq, host, extra=(), body=""):
    lines = [start,
             f"Via: SIP/2.0/WS {host};branch=z9hG4bK{cid}{cseq.replace(' ', '')}",
             "From: <sip:alice@example.com>;tag=alice" + cid,
             "To: <sip:bob@example.com>" + (";tag=bob" + cid if not start.startswith(("INVITE",)) else ""),
             f"Call-ID: ws-{cid}@example.com", f"CSeq: {cseq}", "Max-Forwards: 70", *extra,
             f"Content-Length: {len(body.encode())}"]
    return "\r\n".join(lines) + "\r\n\r\n" + body


LOG = []


async def send(ws, text, cid, from_client):
    LOG.append({"call": cid, "client": from_client, "text": text})
    await ws.send(text)


async def server_handler(ws):
    async for m in ws:
        start = m.split("\r\n", 1)[0]
        cid = m.split("Call-ID: ws-", 1)[1].split("@", 1)[0]
        host = "df7jal23ls0d.invalid"
        if start.startswith("INVITE"):
            sock = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            await send(ws, msg("SIP/2.0 100 Trying", cid, "1 INVITE", host), cid, False)
            await send(ws, msg("SIP/2.0 180 Ringing", cid, "1 INVITE", host), cid, False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            await asyncio.sleep(0.05)
            body = SDP.format(ip="192.0.2.2", port=30000 + int(cid) * 2)
            await send(ws, msg("SIP/2.0 200 OK", cid, "1 INVITE", host,
                               ("Contact: <sip:bob@df7jal23ls0d.invalid;transport=ws>",
                                "Content-Type: application/sdp"), body), cid, False)
        elif start.startswith("BYE"):
            await send(ws, msg("SIP/2.0 200 OK", cid, "2 BYE", host), cid, False)


async def call(host, port, n, client_tls):
    cid = str(n)
    scheme = "wss" if client_tls else "ws"
    # No permessage-deflate: SIP servers (Asterisk, Kamailio, FreeSWITCH)
    # do not accept it.
    async with connect(f"{scheme}://{host}:{port}/sip", subprotocols=["sip"], compression=None,
                       ssl=client_tls) as ws:
        body = SDP.format(ip="192.0.2.1", port=20000 + n * 2)
        inv = msg("INVITE sip:bob@example.com SIP/2.0", cid, "1 INVITE", "c.invalid",
                  ("Contact: <sip:alice@c.invalid;transport=ws>", "Content-Type: application/sdp"), body)
        LOG.append({"call": cid, "client": True, "text": inv})
        if n % 2 == 1:
            third = len(inv) // 3
            await ws.send([inv[:third], inv[third:2 * third], inv[2 * third:]])
        else:
            await ws.send(inv)
        for _ in range(3):
            await ws.recv()
        await send(ws, msg("ACK sip:bob@df7jal23ls0d.invalid;transport=ws SIP/2.0", cid, "1 ACK", "c.invalid"),
                   cid, True)
        await asyncio.sleep(0.2)
        await send(ws, msg("BYE sip:bob@df7jal23ls0d.invalid;transport=ws SIP/2.0", cid, "2 BYE", "c.invalid"),
                   cid, True)
        await ws.recv()


async def main(host, port, calls, log, tls):
    server_tls = client_tls = None
    if tls:
        cert, key, keylog = tls
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(cert, key)
        client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_tls.check_hostname = False
        client_tls.verify_mode = ssl.CERT_NONE
        client_tls.keylog_filename = keylog
    async with serve(server_handler, host, port, subprotocols=["sip"], compression=None, ssl=server_tls):
        for n in range(1, calls + 1):
            await call(host, port, n, client_tls)
    with open(log, "w") as f:
        for e in LOG:
            f.write(json.dumps(e) + "\n")
    print("done", flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], int(a[1]), int(a[2]), a[3], a[4:7] if len(a) >= 7 else None))
