#!/usr/bin/env python3
"""Boots one dme VM-tier guest in QEMU and turns what it printed into TAP.

    run-vm.py --kernel bzImage --initrd guest.cpio.gz [--shape basic|numa|mock]
              [--append "extra kernel args"] [--timeout 300] [--log-dir DIR]
              [--expect-dmar-fault] [--build-root DIR --ninja NINJA]
    run-vm.py --build-root DIR --ninja NINJA --prepare FILE...

The guest kernel and the initramfs images are build_by_default: false
targets that no test names (Meson before 1.7 builds every target a test names
with a plain `ninja`): with --build-root, this script builds the --kernel and --initrd
files itself, with `NINJA -C DIR`, before booting; --prepare only builds the
files given (the vm-prepare test, which runs first, alone and without a
timeout; an exit-code test: 0 built, 1 failed, 77 skipped).

The guest (tests/vm/mkinitrd.sh) writes the TAP of its programs, framed by
"DME-VM: " protocol lines, to its second UART; the kernel console goes to the
first. Both are files in --log-dir (tap.log, console.log; qemu.log holds
QEMU's own output). This script re-emits ONE TAP stream on stdout: every guest
check becomes its own numbered result ("ok 7 - iommufd: ..."), followed by the
runner's own checks (guest reached /init, NVMe bound, each program exited 0
with a matching plan, end marker, clean power-off within the timeout, kernel
log without DMAR faults, panics, oopses, BUGs or WARNINGs). Any failure prints
the log tails on stderr. When QEMU cannot run at all, the output is
"1..0 # SKIP <reason>".
"""

import argparse
import collections
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MARK = "DME-VM: "
TAP_RE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
PLAN_RE = re.compile(r"^1\.\.(\d+)")
DMAR_RE = re.compile(r"DMAR: \[DMA (Read|Write)|DMAR: DRHD: handling fault|"
                     r"fault reason 0x[0-9a-f]+|DMAR: .*[Ff]ault")
BAD_RE = re.compile(r"Kernel panic|BUG:|Oops|WARNING:|Call Trace:|"
                    r"general protection fault|Unable to handle kernel|"
                    r"segfault at|invalid opcode|soft lockup|hung_task")

# Guest machine shapes. All are q35 with 2 CPUs and 1 GiB.
#   basic: emulated VT-d (intel-iommu, aw-bits 39) + one NVMe controller.
#   numa:  like basic, two NUMA nodes (one CPU, 512 MiB each), a second NVMe
#          controller behind a pxb-pcie host bridge on node 1.
#   mock:  no emulated IOMMU and no NVMe: the iommufd selftest mock IOMMU of
#          6.12 only works when it is the sole IOMMU driver (with intel-iommu
#          registered first, the mock device is probed with the Intel ops,
#          stays without IOMMU and MOCK_DOMAIN fails EINVAL).
SHAPES = {
    "basic": {"nvme": 1, "viommu": True, "numa": False},
    "numa": {"nvme": 2, "viommu": True, "numa": True},
    "mock": {"nvme": 0, "viommu": False, "numa": False},
}


class Tap:
    """The combined TAP stream on stdout."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def emit(self, ok, desc, directive=""):
        self.n += 1
        if not ok:
            self.failed += 1
        desc = desc.replace("#", "_")
        line = f"{'ok' if ok else 'not ok'} {self.n} - {desc}"
        if directive:
            line += f" # {directive}"
        print(line, flush=True)

    def raw_result(self, ok, text):
        """A guest result; text may carry its own '# SKIP/TODO' directive."""
        self.n += 1
        if not ok and not re.search(r"#\s*TODO", text, re.I):
            self.failed += 1
        print(f"{'ok' if ok else 'not ok'} {self.n} - {text}", flush=True)

    @staticmethod
    def diag(text):
        print(f"# {text}", flush=True)

    def plan(self):
        print(f"1..{self.n}", flush=True)


# The exit status of a skip: 0 with TAP's "1..0 # SKIP"; --prepare is an
# exit-code test (so that `meson test -v` shows the kernel build as it runs),
# where 77 means skipped.
skip_status = 0


def skip_all(reason):
    banner = "!" * 72
    sys.stderr.write(f"{banner}\nVM tests SKIPPED: {reason}\n{banner}\n")
    print(f"1..0 # SKIP {reason}", flush=True)
    sys.exit(skip_status)


def find_qemu():
    qemu = os.environ.get("DMEVM_QEMU") or shutil.which("qemu-system-x86_64")
    if not qemu:
        skip_all("qemu-system-x86_64 not found: install package qemu-system-x86 "
                 "(scripts/install-deps.sh --vm)")
    try:
        r = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        skip_all(f"{qemu} cannot run: {e}")
    if r.returncode != 0:
        skip_all(f"{qemu} --version failed: {r.stderr.strip()[:200]}")
    return qemu, r.stdout.splitlines()[0] if r.stdout else "?"


def qemu_command(qemu, a, images, log_dir):
    accel = os.environ.get("DMEVM_ACCEL", "tcg")
    shape = SHAPES[a.shape]
    iommu_args = "intel_iommu=on iommu=strict " if shape["viommu"] else ""
    append = (f"console=ttyS0 {iommu_args}panic=-1 "
              f"hugepages={a.hugepages} dme.hugepages={a.hugepages} "
              f"dme.prog_timeout={a.prog_timeout} {a.append}").strip()
    cmd = [qemu,
           "-machine", "q35,kernel-irqchip=split", "-accel", accel,
           "-smp", "2", "-m", "1G",
           "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
           "-chardev", f"file,id=ser0,path={os.path.join(log_dir, 'console.log')}",
           "-serial", "chardev:ser0",
           "-chardev", f"file,id=ser1,path={os.path.join(log_dir, 'tap.log')}",
           "-serial", "chardev:ser1",
           "-kernel", a.kernel, "-initrd", a.initrd, "-append", append]
    if shape["viommu"]:
        cmd += ["-device", "intel-iommu,intremap=on,caching-mode=on,aw-bits=39"]
    if shape["nvme"] >= 1:
        cmd += ["-drive", f"file={images[0]},if=none,id=nv0,format=raw",
                "-device", "nvme,serial=dme0001,drive=nv0"]
    if shape["numa"]:
        cmd += ["-object", "memory-backend-ram,id=m0,size=512M",
                "-object", "memory-backend-ram,id=m1,size=512M",
                "-numa", "node,nodeid=0,cpus=0,memdev=m0",
                "-numa", "node,nodeid=1,cpus=1,memdev=m1",
                "-device", "pxb-pcie,id=pxb1,bus_nr=64,numa_node=1",
                "-device", "pcie-root-port,id=rp1,bus=pxb1,chassis=1,slot=1",
                "-drive", f"file={images[1]},if=none,id=nv1,format=raw",
                "-device", "nvme,serial=dme0002,drive=nv1,bus=rp1"]
    return cmd


class Guest:
    """Parses the TAP channel line by line and re-emits results."""

    def __init__(self, tap):
        self.tap = tap
        self.init_seen = False
        self.done_seen = False
        self.bound = None
        self.programs = []
        self.ran = {}  # name -> dict(results, failed, plan, rc)
        self.cur = None

    def line(self, text):
        text = text.rstrip("\r\n").replace("\r", "")
        if not text:
            return
        if text.startswith(MARK):
            self.control(text[len(MARK):])
            return
        if self.cur is None:
            Tap.diag(f"guest| {text}")
            return
        prog = self.ran[self.cur]
        m = TAP_RE.match(text)
        if m:
            ok = m.group(1) == "ok"
            prog["results"] += 1
            if not ok and not re.search(r"#\s*TODO", m.group(3), re.I):
                prog["failed"] += 1
            self.tap.raw_result(ok, f"{self.cur}: {m.group(3)}")
            return
        m = PLAN_RE.match(text)
        if m:
            prog["plan"] = int(m.group(1))
            return
        if text.startswith("Bail out!"):
            prog["failed"] += 1
            self.tap.emit(False, f"{self.cur}: {text}")
            return
        if text.startswith("#"):
            print(f"# {self.cur}: {text.lstrip('#').strip()}", flush=True)
        else:
            Tap.diag(f"{self.cur}| {text}")

    def control(self, c):
        if c == "init start":
            self.init_seen = True
            self.tap.emit(True, "vm: guest kernel booted and reached /init")
        elif c.startswith("nvme-bound "):
            self.bound = int(c.split()[1])
        elif c.startswith("programs "):
            self.programs = c.split()[1:]
        elif c.startswith("run "):
            self.cur = c.split()[1]
            self.ran[self.cur] = {"results": 0, "failed": 0, "plan": None, "rc": None}
            Tap.diag(f"--- guest program {self.cur} ---")
        elif c.startswith("exit "):
            parts = c.split()
            name, rc = parts[1], int(parts[2]) if len(parts) > 2 else -1
            self.finish(name, rc)
            self.cur = None
        elif c == "done":
            self.done_seen = True
        else:
            Tap.diag(f"guest: {c}")

    def finish(self, name, rc):
        prog = self.ran.setdefault(name, {"results": 0, "failed": 0, "plan": None, "rc": None})
        prog["rc"] = rc
        problems = []
        if rc == 124 or rc == 143:
            problems.append(f"timed out in the guest (exit {rc})")
        elif rc != 0:
            problems.append(f"exit status {rc}")
        if prog["plan"] is None:
            problems.append("printed no plan")
        elif prog["plan"] != prog["results"]:
            problems.append(f"plan 1..{prog['plan']} but {prog['results']} results")
        if prog["results"] == 0:
            problems.append("ran no checks")
        if prog["failed"] and rc == 0:
            problems.append(f"{prog['failed']} failed checks but exit status 0")
        self.tap.emit(not problems,
                      f"vm: {name} finished: exit 0, {prog['results']} results matching its plan"
                      if not problems else f"vm: {name} finished cleanly ({'; '.join(problems)})")


def build(build_root, ninja, files):
    """Brings @files (outputs of the build tree at @build_root) up to date
    with ninja; one caller at a time (vm tests run in parallel). Returns
    (ok, seconds, tail of ninja's output)."""
    targets = [os.path.relpath(os.path.abspath(f), os.path.abspath(build_root)) for f in files]
    lock_path = os.path.join(os.path.dirname(os.path.abspath(files[0])), "vm-prereq.lock")
    start = time.monotonic()
    last = collections.deque(maxlen=30)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # ninja's own output (the kernel build's progress) goes to stderr as
        # it comes: stdout is the TAP stream
        proc = subprocess.Popen([ninja, "-C", build_root] + targets, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        for line in proc.stdout:
            sys.stderr.write(line)
            sys.stderr.flush()
            last.append(line)
        proc.wait()
    return proc.returncode == 0, time.monotonic() - start, "".join(last)


def prepare(a):
    """--prepare: build the vm suite's prerequisites. An exit-code test: 0
    built, 1 failed, 77 skipped (no QEMU: every vm test skips anyway)."""
    global skip_status
    skip_status = 77
    find_qemu()
    ok, secs, out = build(a.build_root, a.ninja, a.prepare)
    names = " ".join(os.path.basename(f) for f in a.prepare)
    if ok:
        print(f"vm: guest kernel and initramfs images up to date in {secs:.0f}s ({names})")
        return 0
    print(f"vm: building the guest kernel and initramfs images failed ({names}):\n{out}")
    return 1


def tail(path, n):
    try:
        with open(path, "r", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return f"({path} missing)\n"
    return "".join(lines[-n:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel")
    ap.add_argument("--initrd")
    ap.add_argument("--build-root", help="build --kernel and --initrd in this build tree first")
    ap.add_argument("--ninja", default="ninja")
    ap.add_argument("--prepare", nargs="+", metavar="FILE",
                    help="only build these outputs of --build-root")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="basic")
    ap.add_argument("--append", default="")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("DMEVM_TIMEOUT", 300)))
    ap.add_argument("--prog-timeout", type=int, default=240)
    ap.add_argument("--hugepages", type=int, default=64)
    ap.add_argument("--log-dir", default=None)
    ap.add_argument("--name", default=None)
    ap.add_argument("--expect-dmar-fault", action="store_true",
                    help="the guest provokes DMAR faults on purpose: require at least one")
    a = ap.parse_args()
    if a.prepare:
        if not a.build_root:
            ap.error("--prepare needs --build-root")
        return prepare(a)
    if not a.kernel or not a.initrd:
        ap.error("--kernel and --initrd are required")

    qemu, version = find_qemu()
    if a.build_root:
        ok, secs, out = build(a.build_root, a.ninja, [a.kernel, a.initrd])
        if not ok:
            print("1..1")
            print(f"not ok 1 - vm: {os.path.basename(a.kernel)} and "
                  f"{os.path.basename(a.initrd)} built")
            for l in out.splitlines():
                Tap.diag(l)
            return 1
    for f in (a.kernel, a.initrd):
        if not os.path.isfile(f):
            print("1..1")
            print(f"not ok 1 - vm: {f} exists (build it first: meson compile -C build)")
            sys.stderr.write(f"run-vm: {f} not found\n")
            return 1

    name = a.name or os.path.basename(a.initrd).split(".")[0]
    log_dir = os.path.abspath(a.log_dir or os.path.join("vm-logs", name))
    os.makedirs(log_dir, exist_ok=True)
    for f in ("console.log", "tap.log", "qemu.log"):
        try:
            os.unlink(os.path.join(log_dir, f))
        except FileNotFoundError:
            pass

    tap = Tap()
    guest = Guest(tap)
    tmp = tempfile.mkdtemp(prefix="dme-vm-")
    images = []
    for i in range(SHAPES[a.shape]["nvme"]):
        img = os.path.join(tmp, f"nvme{i}.img")
        with open(img, "wb") as f:
            f.truncate(1 << 30)  # sparse 1 GiB
        images.append(img)

    cmd = qemu_command(qemu, a, images, log_dir)
    with open(os.path.join(log_dir, "cmdline"), "w") as f:
        f.write(" ".join(cmd) + "\n")
    Tap.diag(f"vm: {name}, shape {a.shape}, {version}, logs in {log_dir}")

    start = time.monotonic()
    qlog = open(os.path.join(log_dir, "qemu.log"), "wb")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        skip_all(f"cannot start {qemu}: {e}")

    tap_path = os.path.join(log_dir, "tap.log")
    buf = b""
    pos = 0
    timed_out = False

    def pump():
        nonlocal buf, pos
        try:
            with open(tap_path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            return
        pos += len(data)
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            guest.line(raw.decode("utf-8", "replace"))

    try:
        while proc.poll() is None:
            pump()
            if time.monotonic() - start > a.timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        qlog.close()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - start
    pump()
    if buf:
        guest.line(buf.decode("utf-8", "replace"))

    # A program that never printed its exit line.
    if guest.cur is not None:
        p = guest.ran[guest.cur]
        tap.emit(False, f"vm: {guest.cur} finished (no exit line: the guest hung, "
                        f"crashed or timed out after {p['results']} results)")
        guest.cur = None

    if not guest.init_seen:
        tap.emit(False, "vm: guest kernel booted and reached /init")
    want_nvme = SHAPES[a.shape]["nvme"]
    tap.emit(guest.bound == want_nvme,
             f"vm: {want_nvme} NVMe controller(s) bound to vfio-pci (guest said {guest.bound})")
    never = [p for p in guest.programs if p not in guest.ran]
    tap.emit(bool(guest.programs) and not never,
             "vm: every guest program ran" + (f" (never ran: {' '.join(never)})" if never else ""))
    tap.emit(guest.done_seen, "vm: guest printed the end marker (DME-VM: done)")
    console = os.path.join(log_dir, "console.log")
    try:
        with open(console, "r", errors="replace") as f:
            klog = f.read().splitlines()
    except OSError:
        klog = []
    # A panic also ends QEMU with status 0 (panic=-1 reboots, -no-reboot exits).
    powered_off = any("reboot: Power down" in l for l in klog)
    if timed_out:
        how = "killed at the timeout"
    elif proc.returncode != 0:
        how = f"qemu exit status {proc.returncode}"
    elif not powered_off:
        how = "the guest rebooted or crashed instead of powering off"
    else:
        how = f"after {elapsed:.1f}s"
    tap.emit(not timed_out and proc.returncode == 0 and powered_off,
             f"vm: guest powered off by itself within {a.timeout:.0f}s ({how})")
    dmar = [l for l in klog if DMAR_RE.search(l)]
    bad = [l for l in klog if BAD_RE.search(l)]
    if a.expect_dmar_fault:
        tap.emit(bool(dmar), f"vm: kernel log shows the expected DMAR fault(s) ({len(dmar)} lines)")
    else:
        tap.emit(not dmar, f"vm: kernel log shows no DMAR fault ({len(dmar)} lines)")
    for l in dmar[:10]:
        Tap.diag(f"klog| {l}")
    tap.emit(not bad, f"vm: kernel log shows no panic, oops, BUG or WARNING ({len(bad)} lines)")
    for l in bad[:10]:
        Tap.diag(f"klog| {l}")

    Tap.diag(f"vm: {name} boot-to-poweroff {elapsed:.1f}s")
    tap.plan()

    if tap.failed:
        sys.stderr.write(f"\n==== run-vm: {tap.failed} failure(s) in {name}; logs in {log_dir}\n")
        sys.stderr.write(f"==== command: {' '.join(cmd)}\n")
        sys.stderr.write("==== tail of the kernel console (console.log):\n")
        sys.stderr.write(tail(console, 60))
        sys.stderr.write("==== tail of the TAP channel (tap.log):\n")
        sys.stderr.write(tail(tap_path, 40))
        sys.stderr.write("==== qemu output (qemu.log):\n")
        sys.stderr.write(tail(os.path.join(log_dir, "qemu.log"), 20))
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
