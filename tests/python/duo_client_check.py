#!/usr/bin/env python3
"""Drive mock-duo with Duo's official Python client (duo_client 5.7.0).

Usage: duo_client_check.py HOST PORT CA_PEM IKEY SKEY

Prints one line per check ("OK <what>") and exits non-zero at the first surprise. The Rust test
tests/tests/mock_python.rs runs it and checks the lines and mock-duo's request log.

duo_client picks the HMAC digest from `digestmod` for sig_version 1 and 2 (default SHA-512) and
always uses SHA-512 for 4 and 5, so v2 with SHA-1 needs digestmod=hashlib.sha1.
"""
import hashlib
import sys

import duo_client


def auth(host, port, ca, ikey, skey, sig_version, digestmod):
    # duo_client's own certificate check matches DNS names only, so the host is "localhost"
    # and the port goes separately (its connection class does not split "host:port").
    return duo_client.Auth(
        ikey=ikey,
        skey=skey,
        host=host,
        port=port,
        ca_certs=ca,
        sig_version=sig_version,
        digestmod=digestmod,
    )


def main():
    host, port, ca, ikey, skey = sys.argv[1:6]
    port = int(port)
    print("duo_client", duo_client.__version__ if hasattr(duo_client, "__version__") else "?")
    for label, sig_version, digestmod in [
        ("v2-sha1", 2, hashlib.sha1),
        ("v2-sha512", 2, hashlib.sha512),
        ("v5", 5, hashlib.sha512),
    ]:
        client = auth(host, port, ca, ikey, skey, sig_version, digestmod)
        checked = client.check()
        if not isinstance(checked.get("time"), int):
            sys.exit("check() without time under %s: %r" % (label, checked))
        print("OK %s check" % label)
        pre = client.preauth(username="alice")
        if pre.get("result") != "auth" or not pre.get("devices"):
            sys.exit("preauth under %s: %r" % (label, pre))
        print("OK %s preauth" % label)
        locked = client.preauth(username="lockout-py")
        if locked.get("result") != "deny":
            sys.exit("lockout preauth under %s: %r" % (label, locked))
        print("OK %s preauth deny" % label)

    wrong = auth(host, port, ca, ikey, "W" * 40, 5, hashlib.sha512)
    try:
        wrong.check()
    except RuntimeError as e:
        text = str(e)
        if "401" not in text:
            sys.exit("wrong skey raised without 401: %s" % text)
        print("OK wrong skey rejected: %s" % text.replace("\n", " "))
    else:
        sys.exit("wrong skey was accepted")
    print("ALL OK")


if __name__ == "__main__":
    main()
