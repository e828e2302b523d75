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
Prints "ready" on stdout once listening; runs until killed.
"""
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
        for a, b in ((inner, outer), (outer, inner)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


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
    serve(p.parse_args())


if __name__ == "__main__":
    main()
