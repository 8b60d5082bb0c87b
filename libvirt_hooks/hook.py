"""``accel-libvirt-hook``: libvirt's qemu hook for accelerator domains.

libvirt calls ``<domain> <op> <subop> <extra>`` with the domain XML on
stdin, and at a plain start ignores what the hook prints: the hook can
only refuse (non-zero exit, stderr shown in libvirt's error) or prepare.
So at ``prepare begin`` it checks every PCI hostdev against the host as it
is now and records which functions the domain holds; at ``release end`` it
marks them stopped; at ``migrate begin`` and ``restore begin``, the only
points where libvirt takes a new XML, it prints the XML with moved
functions at their current addresses.

Most domains have no accelerator: they leave on the fast path, which
imports nothing beyond the standard library. Nothing here calls back into
libvirt (that deadlocks) or runs a shell.
"""

import os
import sys

# A domain whose XML holds none of these has no device this hook checks.
FAST_PATH_MARKERS = (b"<hostdev", b"'mdev'", b'"mdev"')
FULL_PATH_OPS = {("prepare", "begin"), ("release", "end"),
                 ("migrate", "begin"), ("restore", "begin")}
DEFAULT_CONFIG = "/etc/nova-accel/nova-accel.conf"
INSTALL_PATH = "/etc/libvirt/hooks/qemu.d/nova-accel"
EXIT_REFUSED = 1
EXIT_USAGE = 2


def needs_full_path(op: str, subop: str, xml: bytes) -> bool:
    return ((op, subop) in FULL_PATH_OPS
            and any(marker in xml for marker in FAST_PATH_MARKERS))


def main(argv=None, stdin=None, stdout=None, stderr=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    stderr = stderr or sys.stderr
    if argv[:1] == ["--install"]:
        return install(argv[1:], stderr)
    if len(argv) < 3:
        stderr.write("usage: accel-libvirt-hook DOMAIN OP SUBOP [EXTRA] "
                     "(domain XML on stdin) | --install [DEST]\n")
        return EXIT_USAGE
    xml = (stdin or sys.stdin.buffer).read()
    name, op, subop = argv[:3]
    if not needs_full_path(op, subop, xml):
        return 0
    from libvirt_hooks import decide
    return decide.run(name, op, subop, xml, config_file(),
                      stdout or sys.stdout, stderr)


def config_file() -> str | None:
    path = os.environ.get("NOVA_ACCEL_CONFIG", DEFAULT_CONFIG)
    return path if os.path.exists(path) else None


def install(args, stderr) -> int:
    """Put the hook where libvirt looks for it; safe to run again."""
    dest = args[0] if args else INSTALL_PATH
    hooks_dir = os.path.dirname(dest)
    new_dir = not os.path.isdir(hooks_dir)
    os.makedirs(hooks_dir, mode=0o755, exist_ok=True)
    script = (f"#!{sys.executable}\n"
              "import sys\n"
              "from libvirt_hooks.hook import main\n"
              "sys.exit(main())\n")
    current = None
    if os.path.exists(dest):
        with open(dest) as f:
            current = f.read()
    if current != script:
        tmp = f"{dest}.tmp"
        with open(tmp, "w") as f:
            f.write(script)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
        stderr.write(f"installed {dest}\n")
    else:
        stderr.write(f"{dest} is already current\n")
    if new_dir:
        stderr.write("libvirtd reads whether any hook exists when it starts: "
                     "send it SIGHUP (or restart it) so it runs this one\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
