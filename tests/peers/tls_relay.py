#!/usr/bin/env python3
"""A TCP<->TLS relay pair for tests: real TLS (OpenSSL through Python's ssl)
between two SIP peers that speak plain TCP (SIPp, baresip), with the secrets
written to an NSS key log as browsers and OpenSSL's -keylogfile do.

  tls_relay.py client --listen H:P --connect H:P [--keylog F] [tls options]
      accepts plain TCP, opens TLS to --connect for each connection
  tls_relay.py server --listen H:P --connect H:P --cert C --key K [tls options]
      accepts TLS, opens plain TCP to --connect for each connection

tls options: --max-version 1.2|1.3, --ciphers OPENSSL_LIST (TLS 1.2 suites),
--no-etm (no encrypt-then-MAC), --no-tickets, --no-ems (OpenSSL option).
--rewrite FROM TO (client role): in SIP coming back from the TLS side,
replace FROM with TO, as an outbound proxy rewrites a Contact so that the
caller's in-dialog requests come back through it.
Prints "ready" on stdout once listening; runs until killed.
"""
import re
import argparse
import socket
import ssl
import sys
import threading

OP_NO_ENCRYPT_THEN_MAC = 0x00080000  # SSL_OP_NO_ENCRYPT_THEN_MAC (OpenSSL 3)
OP_NO_EXTENDED_MASTER_SECRET = 0x00000001  # SSL_OP_NO_EXTENDED_MASTER_SECRET


def context(args, server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    if server:
        ctx.load_cert_chain(args.cert, args.key)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if args.keylog:
        ctx.keylog_filename = args.keylog
    if args.max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.ciphers:
        ctx.set_ciphers(args.ciphers)
    if args.no_etm:
        ctx.options |= OP_NO_ENCRYPT_THEN_MAC
    if args.no_ems:
        ctx.options |= OP_NO_EXTENDED_MASTER_SECRET
    if args.no_tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def pump(src, dst):
    """Copies src to dst until either ends, then closes both."""
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.close()
        except OSError:
            pass


def sip_messages(buf):
    """Splits whole SIP messages (framed by Content-Length) off buf."""
    out = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return out, buf
        m = re.search(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", buf[:end + 2], re.I)
        total = end + 4 + (int(m.group(1)) if m else 0)
        if len(buf) < total:
            return out, buf
        out.append(buf[:total])
        buf = buf[total:]


def pump_rewrite(src, dst, old, new):
    """Like pump, replacing old with new in each SIP message."""
    buf = b""
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            msgs, buf = sip_messages(buf + b)
            for m in msgs:
                dst.sendall(m.replace(old, new))
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.close()
        except OSError:
            pass


def serve(args):
    host, port = args.listen.rsplit(":", 1)
    chost, cport = args.connect.rsplit(":", 1)
    ctx = context(args, args.role == "server")
    lsock = socket.create_server((host, int(port)), reuse_port=False)
    print("ready", flush=True)
    while True:
        conn, _ = lsock.accept()
        try:
            if args.role == "server":
                inner = ctx.wrap_socket(conn, server_side=True)
                outer = socket.create_connection((chost, int(cport)))
            else:
                inner = conn
                raw = socket.create_connection((chost, int(cport)))
                outer = ctx.wrap_socket(raw, server_hostname="sip.test")
        except (OSError, ssl.SSLError) as e:
            print(f"connection failed: {e}", file=sys.stderr, flush=True)
            conn.close()
            continue
        threading.Thread(target=pump, args=(inner, outer), daemon=True).start()
        if args.rewrite and args.role == "client":
            old, new = (x.encode() for x in args.rewrite)
            threading.Thread(target=pump_rewrite, args=(outer, inner, old, new), daemon=True).start()
        else:
            threading.Thread(target=pump, args=(outer, inner), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["client", "server"])
    p.add_argument("--listen", required=True)
    p.add_argument("--connect", required=True)
    p.add_argument("--keylog")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--max-version", choices=["1.2", "1.3"])
    p.add_argument("--ciphers")
    p.add_argument("--no-etm", action="store_true")
    p.add_argument("--no-ems", action="store_true")
    p.add_argument("--no-tickets", action="store_true")
    p.add_argument("--rewrite", nargs=2, metavar=("FROM", "TO"))
    serve(p.parse_args())


if __name__ == "__main__":
    main()
