# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The one way nova-accel opens a file: the hook, the attach worker, the
agent and both CLIs run as root, and a path that someone else can bend
(a link planted where a file goes, a FIFO, ``/dev/zero``, a file of
another owner) must not make root read forever, read without end, or
write where the link points.

So every open here is ``O_NOFOLLOW`` (the last component is never a
link; a name inside a directory is opened relative to the directory's
descriptor, ``dir_fd``), ``O_NONBLOCK`` (a FIFO does not hang the open)
and ``O_CLOEXEC``; what was opened must be a regular file (a directory
where a directory is wanted) owned by the user we run as or by root; and
every read has a bound. A refusal is a ``Refused``, an ``OSError`` whose
``strerror`` says in words what is wrong, so callers that handle a file
that cannot be opened handle these the same way.

Which paths may be trusted at all (who owns and may write the
directories above them) is ``trust``'s. Standard library only: the
hook's fast path imports this at every domain start.
"""

from __future__ import annotations

import errno
import os
import stat

SYSFS_ATTRIBUTE_BYTES = 4096  # what one sysfs attribute shows (PAGE_SIZE)
# Far above any configuration file: a bound, so that a link to /dev/zero
# where the file goes is refused rather than read for ever.
MAX_CONFIG_BYTES = 1024 * 1024

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC \
    | os.O_NOCTTY
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symbolic link"}


class Refused(OSError):
    """A file that is not what nova-accel may open as it stands: a link,
    not a regular file, someone else's, or larger than its bound."""

    def __init__(self, path: str, reason: str,
                 code: int = errno.EPERM):
        super().__init__(code, reason, path)

    def __str__(self) -> str:
        # Callers name the file already, as they do for other OSErrors.
        return self.strerror


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _check(fd: int, path: str, owned: bool, want: int,
           private: bool = False) -> os.stat_result:
    """``fd``'s status once it is of type ``want``, when ``owned`` ours
    or root's (who can change anything anyway), and when ``private``
    writable by its owner alone."""
    st = os.fstat(fd)
    if stat.S_IFMT(st.st_mode) != want:
        wanted = "a directory" if want == stat.S_IFDIR else \
            "a regular file"
        raise Refused(path, f"is {kind_of(st.st_mode)}, not {wanted}")
    if owned and st.st_uid not in (os.geteuid(), 0):
        raise Refused(path, f"is owned by uid {st.st_uid}, not by root or "
                            f"uid {os.geteuid()}")
    if private and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Refused(path, f"is writable by its group or others "
                            f"(mode {stat.S_IMODE(st.st_mode):04o})")
    return st


def _open(path: str, flags: int, mode: int = 0o600,
          dir_fd: int | None = None) -> int:
    try:
        return os.open(path, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(path,
                                                                   dir_fd):
            raise Refused(path, "is a symbolic link, which nova-accel "
                                "never follows there", errno.ELOOP) from None
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing
            raise Refused(path, "is a FIFO, not a regular file",
                          errno.ENXIO) from None
        raise


def _is_link(path: str, dir_fd: int | None) -> bool:
    # O_NOFOLLOW says ELOOP for a link, and O_DIRECTORY ENOTDIR.
    try:
        return stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def checked(fd: int, path: str, owned: bool = True,
            private: bool = False) -> int:
    """``fd`` once it is a regular file (ours or root's when ``owned``,
    writable by its owner alone when ``private``); closed and Refused
    otherwise."""
    try:
        _check(fd, path, owned, stat.S_IFREG, private)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int, path: str, limit: int, *, truncate: bool) -> bytes:
    """At most ``limit`` bytes of ``fd``, just opened. More than that is
    Refused, or cut at ``limit`` with ``truncate`` (sysfs attributes,
    which the kernel sizes itself)."""
    chunks, size = [], 0
    while size <= limit:
        try:
            chunk = os.read(fd, limit + 1 - size)
        except BlockingIOError:
            raise Refused(path, "gives no data without waiting",
                          errno.EAGAIN) from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        if not truncate:
            raise Refused(path, f"is larger than the {limit} bytes "
                                f"nova-accel reads of it", errno.EFBIG)
        data = data[:limit]
    return data


def read(path: str, limit: int, *, dir_fd: int | None = None,
         owned: bool = True, private: bool = False, follow: bool = False,
         truncate: bool = False) -> bytes:
    """The bytes of the regular file ``path`` (a name in ``dir_fd`` when
    given), at most ``limit``.

    ``follow`` resolves links first (a configuration file the operator
    links elsewhere; ``trust`` has checked both the link's directory and
    the target's), and the resolved path is then opened ``O_NOFOLLOW``.
    ``owned``: the file must be ours or root's; package data, which is as
    trusted as the code beside it, is read with ``owned=False``.
    ``private``: nobody else may write it either (a file that ``trust``
    has not checked by its path: one of a folder's).
    """
    where = os.path.realpath(path) if follow and dir_fd is None else path
    fd = checked(_open(where, _READ, dir_fd=dir_fd), path, owned, private)
    try:
        return read_fd(fd, path, limit, truncate=truncate)
    finally:
        os.close(fd)


def read_text(path: str, limit: int, **kwargs) -> str:
    """``read`` decoded as UTF-8; UnicodeDecodeError when it is not."""
    return read(path, limit, **kwargs).decode("utf-8")


def read_config(path: str) -> str:
    """The text of the configuration file ``path`` (every command of
    nova-accel reads it through here): a regular file of ours or root's
    (an operator may link it elsewhere: ``trust`` checks both ends),
    UTF-8, at most ``MAX_CONFIG_BYTES``; raises OSError or
    UnicodeDecodeError otherwise."""
    return read_text(path, MAX_CONFIG_BYTES, follow=True)


def open_append(path: str, mode: int = 0o600) -> int:
    """A descriptor that appends to ``path``, created ``mode`` if missing
    (a log file)."""
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
             | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    return checked(_open(path, flags, mode), path)


def open_lock(path: str) -> int:
    """A descriptor of the lock file ``path`` (read and write, created
    0600 if missing)."""
    flags = (os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
             | os.O_CLOEXEC | os.O_NOCTTY)
    return checked(_open(path, flags), path)


def open_dir(path: str, *, create: bool = False,
             private: bool = True) -> int:
    """A descriptor of the directory ``path`` itself (never a link to
    one), made 0700 first with ``create``; ``private``: writable by its
    owner alone, since names in it are created and removed as root."""
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    fd = _open(path, _DIRECTORY)
    try:
        _check(fd, path, True, stat.S_IFDIR, private)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_in(dir_fd: int, name: str, mode: int = 0o600) -> None:
    """Create the empty regular file ``name`` in ``dir_fd``; nothing when
    it exists (as a regular file: a link or a FIFO there is Refused)."""
    try:
        os.close(_open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                       | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd))
    except FileExistsError:
        os.close(checked(_open(name, _READ, dir_fd=dir_fd), name))


def write_attribute(directory: str, name: str, value: str) -> None:
    """Write ``value`` to the sysfs attribute ``name`` of ``directory``
    (a real directory inside the sysfs root: ``sysfs_dir``), never
    through a link and never creating a file; truncating, as ``echo >``
    does (a value shorter than the last leaves nothing of it)."""
    dir_fd = _open(directory, _DIRECTORY)
    try:
        fd = checked(_open(name, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW
                           | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                           dir_fd=dir_fd),
                     os.path.join(directory, name))
    finally:
        os.close(dir_fd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def inside(root: str, path: str) -> str | None:
    """Where ``path`` really is, when that is ``root`` itself or below it
    (``root`` resolved too); None when its links lead elsewhere."""
    top = os.path.realpath(root)
    real = os.path.realpath(path)
    if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
        return real
    return None


def sysfs_dir(root: str, *parts: str) -> str | None:
    """The real directory that ``root``/``parts`` leads to, followed link
    by link as sysfs lays them out, when it stays inside ``root``; None
    otherwise (a crafted link is nothing there)."""
    return inside(root, os.path.join(root, *parts))


def read_attribute(root: str, path: str,
                   limit: int = SYSFS_ATTRIBUTE_BYTES) -> bytes:
    """The sysfs attribute at ``path`` below ``root``: its directory must
    lead inside the root, the attribute itself must be a regular file
    there (not a link), and at most ``limit`` bytes are read. Refused
    (an OSError) otherwise."""
    directory = inside(root, os.path.dirname(path))
    if directory is None:
        raise Refused(path, f"leads outside the sysfs root {root}")
    dir_fd = _open(directory, _DIRECTORY)
    try:
        return read(os.path.basename(path), limit, dir_fd=dir_fd,
                    truncate=True)
    except Refused as exc:
        raise Refused(path, exc.strerror, exc.errno) from None
    finally:
        os.close(dir_fd)


def printable_name(name: str) -> bool:
    """Whether ``name``, read from a directory listing, is text a person
    and an XML document can hold: not bytes that are not UTF-8 (which
    ``os.listdir`` hands back as surrogates) nor control characters."""
    return bool(name) and name.isprintable()
