"""Writes, on stdout, the root filesystem of a base image compatible with distroless'
static-debian12:nonroot, for `docker import` where no registry can be reached.

The services are statically linked, so the base supplies only what they read at run time:
CA certificates (Debian's ca-certificates bundle on this machine), the users and groups
(root 0, nonroot 65532, nobody 65534), nsswitch.conf for host lookups, /tmp and the nonroot
home. Entries are sorted and dated at the epoch, so the same certificates give the same layer.
"""

import io
import sys
import tarfile

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

PASSWD = """root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
"""
GROUP = """root:x:0:
nobody:x:65534:
nonroot:x:65532:
"""
# Files first, then DNS: the resolver built into glibc serves both in a static binary.
NSSWITCH = """passwd: files
group: files
hosts: files dns
"""


def entry(name, kind, mode, uid=0, data=b""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = info.gid = uid
    info.mtime = 0
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def main():
    try:
        with open(CA_BUNDLE, "rb") as f:
            certificates = f.read()
    except OSError as e:
        sys.exit(f"no CA bundle at {CA_BUNDLE} (install Debian's ca-certificates): {e}")
    entries = [
        ("etc", tarfile.DIRTYPE, 0o755, 0, b""),
        ("etc/group", tarfile.REGTYPE, 0o644, 0, GROUP.encode()),
        ("etc/nsswitch.conf", tarfile.REGTYPE, 0o644, 0, NSSWITCH.encode()),
        ("etc/passwd", tarfile.REGTYPE, 0o644, 0, PASSWD.encode()),
        ("etc/ssl", tarfile.DIRTYPE, 0o755, 0, b""),
        ("etc/ssl/certs", tarfile.DIRTYPE, 0o755, 0, b""),
        ("etc/ssl/certs/ca-certificates.crt", tarfile.REGTYPE, 0o644, 0, certificates),
        ("home", tarfile.DIRTYPE, 0o755, 0, b""),
        ("home/nonroot", tarfile.DIRTYPE, 0o700, 65532, b""),
        ("tmp", tarfile.DIRTYPE, 0o1777, 0, b""),
    ]
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, mode, uid, data in sorted(entries):
            info, body = entry(name, kind, mode, uid, data)
            tar.addfile(info, body)


if __name__ == "__main__":
    main()
