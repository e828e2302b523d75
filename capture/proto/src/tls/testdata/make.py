#!/usr/bin/env python3
"""Makes the TLS unit-test captures in this directory (run as root, from it):
for each case a short SIP exchange over real TLS (OpenSSL via Python's ssl,
both ends in this process) on 127.0.0.1, captured with tcpdump, with the
key log the client wrote. server.key/server.crt: a throwaway RSA-2048 test
key (made with openssl req -x509 -newkey rsa:2048 -nodes).

Each case: client sends INVITE, server answers 200 OK, client sends BYE,
server answers 200 OK; "resume" cases then open a second connection that
resumes the first session.
"""
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MSGS = [os.path.join(HERE, n) for n in ("invite.sip", "ok.sip", "bye.sip", "ok_bye.sip")]
OP_NO_ETM = 0x00080000

CASES = {
    # name: (port, max version, TLS 1.2 cipher list, extra options, resume)
    "tls13-aes256gcm": (15101, None, None, 0, False),
    "tls12-ecdhe-aes128gcm": (15102, "1.2", "ECDHE-RSA-AES128-GCM-SHA256", 0, False),
    "tls12-ecdhe-chacha20": (15103, "1.2", "ECDHE-RSA-CHACHA20-POLY1305", 0, False),
    "tls12-ecdhe-aes256cbc-sha384": (15104, "1.2", "ECDHE-RSA-AES256-SHA384", 0, False),
    "tls12-ecdhe-aes128cbc-sha-noetm": (15105, "1.2", "ECDHE-RSA-AES128-SHA", OP_NO_ETM, False),
    "tls12-rsa-aes128gcm-resume": (15106, "1.2", "AES128-GCM-SHA256", 0, True),
    "tls12-rsa-aes256gcm-sha384": (15107, "1.2", "AES256-GCM-SHA384", 0, False),
    "tls12-rsa-aes128cbc-sha": (15108, "1.2", "AES128-SHA", 0, False),
}


def read_msg(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            break
        buf += b
    return buf


def ctx(server, ver, ciphers, opts, keylog=None):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    if server:
        c.load_cert_chain(os.path.join(HERE, "server.crt"), os.path.join(HERE, "server.key"))
    else:
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        c.keylog_filename = keylog
    if ver == "1.2":
        c.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        c.set_ciphers(ciphers)
    c.options |= opts
    return c


def run(name, port, ver, ciphers, opts, resume):
    msgs = [open(m, "rb").read() for m in MSGS]
    keylog = os.path.join(HERE, name + ".keys")
    pcap = os.path.join(HERE, name + ".pcap")
    for f in (keylog, pcap):
        if os.path.exists(f):
            os.remove(f)
    td = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "0", "-U", "--immediate-mode", "-w", pcap, f"tcp port {port}"],
                          stderr=subprocess.PIPE)
    while b"listening" not in td.stderr.readline():
        pass
    time.sleep(1)  # "listening" comes a moment before packets are seen
    sctx = ctx(True, ver, ciphers, opts)
    lsock = socket.create_server(("127.0.0.1", port))
    conns = 2 if resume else 1

    def server():
        for _ in range(conns):
            c, _ = lsock.accept()
            s = sctx.wrap_socket(c, server_side=True)
            for req, resp in ((msgs[0], msgs[1]), (msgs[2], msgs[3])):
                read_msg(s, len(req))
                s.sendall(resp)
            s.close()

    t = threading.Thread(target=server)
    t.start()
    cctx = ctx(False, ver, ciphers, opts, keylog)
    session = None
    for i in range(conns):
        raw = socket.create_connection(("127.0.0.1", port))
        s = cctx.wrap_socket(raw, server_hostname="sip.test", session=session)
        for req, resp in ((msgs[0], msgs[1]), (msgs[2], msgs[3])):
            s.sendall(req)
            read_msg(s, len(resp))
        session = s.session
        print(name, i, s.version(), s.cipher()[0], "reused" if s.session_reused else "full")
        s.close()
    t.join()
    time.sleep(0.5)
    td.terminate()
    td.wait()


if __name__ == "__main__":
    for name, case in CASES.items():
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            run(name, *case)
