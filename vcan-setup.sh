#!/usr/bin/env bash
# vcan-setup.sh: the DAQLink virtual CAN test rig.
# On a kernel with SocketCAN it creates vcan interfaces on the host; on a kernel without it
# (this project's CI machine) it runs a command inside a User-Mode-Linux guest that has them.
set -euo pipefail

prog=$(basename "$0")

usage() {
    cat <<EOF
Usage: $prog [--install [--oracles]] [--count N | --iface NAME ...] [--run -- CMD [ARG...]]

Creates virtual CAN interfaces (vcan0 by default) for DAQLink's SocketCAN tests and tools,
and optionally runs a command that uses them, passing its exit code through.

Two paths, chosen automatically:
  Kernel WITH CAN (a laptop: /proc/net/can exists or the vcan module is installed):
      modprobe vcan, 'ip link add dev vcanN type vcan', 'ip link set up vcanN' on the host
      (idempotent; uses sudo when not root). With --run, CMD then runs on the host.
  Kernel WITHOUT CAN (socket(AF_CAN) fails with EAFNOSUPPORT, e.g. this CI machine):
      the interfaces can only exist inside a User-Mode-Linux guest (linux.uml from Debian's
      user-mode-linux package, the host's / as its root via hostfs). --run -- CMD boots the
      guest, loads can, can-raw, can-dev, vcan, brings up lo and the vcan interfaces, cds to
      the current directory, runs CMD as root with PATH and HOME preserved, and powers off.
      CMD's stdout/stderr reach this script's stdout/stderr (after CMD ends); the kernel's own
      console is kept in a boot log that is shown only when the guest fails.
      Files written under host paths (e.g. /tmp/...) are visible on the host afterwards.
      Without --run there is nothing lasting to set up: the script says so and exits 0.

Options:
  --install        apt-get install the Debian packages DAQLink needs, if any are missing.
  --oracles        with --install: also pip-install the test oracles (cantools python-can
                   asammdf paho-mqtt) unless they are already importable.
  --count N        create vcan0 .. vcan(N-1) (default 1).
  --iface NAME     create interface NAME (repeatable; replaces the default vcan0).
  --run -- CMD...  run CMD where the interfaces exist; exit with CMD's exit code.
  --mode host|uml  force a path instead of detecting it (also: DAQLINK_VCAN_MODE).
  -h, --help       this text.

Environment:
  DAQLINK_UML_MEM      guest memory (default 1G).
  DAQLINK_UML_TIMEOUT  seconds before a hung guest is killed (default 600; exit code 124).
  DAQLINK_UML_KEEP=1   keep the guest's temporary directory (init script, boot log).
  DAQLINK_*            all DAQLINK_* variables are passed into the guest, with PATH, HOME,
                       LANG, LC_ALL, TERM, TMPDIR and USER.

Examples:
  $prog --install --oracles
  $prog --count 2 --run -- candump -l vcan0
  $prog --run -- swift test --filter SocketCANTests   # (tests call this themselves)
  $prog --run -- sh -c 'exit 7'; echo \$?               # prints 7
EOF
}

die() { echo "$prog: $*" >&2; exit 2; }

packages=(libssl-dev libsocketcan-dev libmosquitto-dev libcurl4-openssl-dev libzstd-dev zlib1g-dev pkg-config mosquitto
          mosquitto-clients nginx can-utils user-mode-linux kmod iproute2 python3-pip strace)
oracle_modules=(cantools:cantools python-can:can asammdf:asammdf paho-mqtt:paho.mqtt.client)

do_install=0
do_oracles=0
count=
ifaces=()
mode=${DAQLINK_VCAN_MODE:-}
cmd=()
have_run=0

while (($#)); do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --install) do_install=1 ;;
        --oracles) do_oracles=1 ;;
        --count) (($# >= 2)) || die "--count needs a number"; count=$2; shift
                 [[ $count =~ ^[0-9]+$ ]] && ((count >= 1)) || die "--count needs a positive number" ;;
        --iface) (($# >= 2)) || die "--iface needs a name"; ifaces+=("$2"); shift ;;
        --mode) (($# >= 2)) || die "--mode needs host or uml"; mode=$2; shift ;;
        --run) have_run=1; shift
               [[ ${1:-} == -- ]] && shift
               cmd=("$@"); break ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
((have_run == 0 || ${#cmd[@]} > 0)) || die "--run needs a command after --"
explicit_ifaces=0
[[ -n $count || ${#ifaces[@]} -gt 0 ]] && explicit_ifaces=1
if ((${#ifaces[@]} == 0)); then
    for ((i = 0; i < ${count:-1}; i++)); do ifaces+=("vcan$i"); done
elif [[ -n $count ]]; then
    die "use either --count or --iface"
fi
for name in "${ifaces[@]}"; do
    [[ $name =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "bad interface name '$name'"
done

as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

install_packages() {
    local missing=() p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "$prog: installing ${missing[*]}" >&2
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "$prog: all Debian packages present" >&2
    fi
    if ((do_oracles)); then
        local want=() entry
        for entry in "${oracle_modules[@]}"; do
            python3 -c "import ${entry#*:}" 2>/dev/null || want+=("${entry%%:*}")
        done
        if ((${#want[@]})); then
            echo "$prog: pip-installing ${want[*]}" >&2
            # Debian marks the system Python as externally managed; the oracles are test-only.
            python3 -m pip install --quiet --break-system-packages "${want[@]}" 2>/dev/null \
                || python3 -m pip install --quiet "${want[@]}"
        else
            echo "$prog: all oracles importable" >&2
        fi
    fi
}

# Detect without loading anything: a kernel has CAN if the protocol is registered already or its
# vcan module is installed for the running kernel.
kernel_has_can() {
    [[ -e /proc/net/can ]] && return 0
    command -v modinfo >/dev/null && modinfo vcan >/dev/null 2>&1 && return 0
    return 1
}

host_setup() {
    [[ -e /sys/module/vcan ]] || as_root modprobe vcan
    local name
    for name in "${ifaces[@]}"; do
        ip link show dev "$name" >/dev/null 2>&1 || as_root ip link add dev "$name" type vcan
        as_root ip link set up dev "$name"
    done
}

# UML 6.1 saves a guest process's FPU state with PTRACE_SETREGSET(NT_X86_XSTATE) using a buffer
# sized for AVX; hosts with AVX-512/AMX have a larger XSAVE area, the host kernel rejects the
# write (EFAULT) and the guest panics at its first process ("ptrace set fp regs failed, errno =
# 14"). UML falls back to the FXSAVE requests when its start-up XSTATE probe fails, so this
# launcher installs a seccomp filter that fails exactly those ptrace requests with EIO, then
# execs linux.uml. Works on any x86_64 host; the price is that AVX registers are not preserved
# inside the guest, hence the GLIBC_TUNABLES/OPENSSL_ia32cap exports in the init script.
xstate_off_launcher='
import ctypes, os, struct, sys
def insn(code, k, jt=0, jf=0): return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, EIO = 0x7FFF0000, 0x00050000 | 5
prog = [insn(LD, 4), insn(JEQ, 0xC000003E, 0, 7),             # AUDIT_ARCH_X86_64 else allow
        insn(LD, 0), insn(JEQ, 101, 0, 5),                     # __NR_ptrace else allow
        insn(LD, 16), insn(JEQ, 0x4204, 1, 0), insn(JEQ, 0x4205, 0, 2),  # GET/SETREGSET
        insn(LD, 32), insn(JEQ, 0x202, 1, 0),                  # NT_X86_XSTATE
        insn(RET, ALLOW), insn(RET, EIO)]
code = ctypes.create_string_buffer(b"".join(prog))
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = SockFprog(len(prog), ctypes.cast(code, ctypes.c_void_p))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
if libc.prctl(38, 1, None, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit("vcan-setup.sh: seccomp: " + os.strerror(ctypes.get_errno()))
os.execvp(sys.argv[1], sys.argv[1:])
'
glibc_no_avx=-AVX,-AVX2,-AVX512F,-AVX512BW,-AVX512VL,-AVX512DQ,-AVX512CD,-AVX_VNNI,-FMA,-F16C,-AVX_Fast_Unaligned_Load

uml_run() {
    local uml
    uml=$(command -v linux.uml || command -v linux || true)
    [[ -n $uml ]] || die "linux.uml not found: install user-mode-linux (or run --install)"
    local moddir
    moddir=$(ls -d /usr/lib/uml/modules/*/kernel 2>/dev/null | sort -V | tail -n1)
    [[ -n $moddir ]] || die "no UML kernel modules under /usr/lib/uml/modules"

    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/daqlink-uml.XXXXXX")
    if [[ ${DAQLINK_UML_KEEP:-0} == 1 ]]; then
        echo "$prog: guest files kept in $work" >&2
    else
        trap 'rm -rf "$work"' EXIT
    fi

    {
        echo '#!/bin/bash'
        echo '# Generated by vcan-setup.sh: PID 1 of a User-Mode-Linux guest.'
        echo 'mount -t proc proc /proc; mount -t sysfs sys /sys'
        # /run and /dev/shm are guest-private; /tmp stays the host's so results land there.
        echo 'mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /dev/shm 2>/dev/null'
        # The guest saves only the FXSAVE (x87/SSE) part of a process's registers (see
        # xstate_off_launcher), so AVX state does not survive a syscall: keep glibc's string
        # functions and OpenSSL on their SSE code paths. (The kernel command line passes the
        # same GLIBC_TUNABLES to this script itself.)
        echo "export GLIBC_TUNABLES=glibc.cpu.hwcaps=$glibc_no_avx"
        echo "export OPENSSL_ia32cap='~0x1800000000000000'"
        printf 'work=%q\n' "$work"
        printf 'moddir=%q\n' "$moddir"
        echo 'setup() {'
        echo '  for m in net/can/can.ko net/can/can-raw.ko drivers/net/can/dev/can-dev.ko drivers/net/can/vcan.ko; do'
        echo '    insmod "$moddir/$m" || return 1'
        echo '  done'
        echo '  ip link set up dev lo || return 1'
        local name
        for name in "${ifaces[@]}"; do
            printf '  ip link add dev %q type vcan && ip link set up dev %q || return 1\n' "$name" "$name"
        done
        echo '}'
        echo 'if setup >"$work/setup.log" 2>&1; then'
        local var
        for var in PATH HOME LANG LC_ALL TERM TMPDIR USER $(compgen -v DAQLINK_ || true); do
            [[ -n ${!var+x} ]] && printf '  export %s=%q\n' "$var" "${!var}"
        done
        printf '  cd %q || exit 1\n' "$PWD"
        printf '  %s </dev/null >"$work/stdout" 2>"$work/stderr"\n' "$(printf '%q ' "${cmd[@]}")"
        echo '  echo $? >"$work/rc.tmp"'
        echo 'else'
        echo '  echo "vcan-setup.sh: guest setup failed:" >"$work/stderr"; cat "$work/setup.log" >>"$work/stderr"'
        echo '  echo 125 >"$work/rc.tmp"'
        echo 'fi'
        # The rename marks a complete result; sync before the forced power-off.
        echo 'mv "$work/rc.tmp" "$work/rc"; sync'
        echo 'poweroff -f'
    } >"$work/init.sh"
    chmod +x "$work/init.sh"

    local umid="daqlink-$$-$RANDOM"
    local status=0
    local launcher=()
    [[ $(uname -m) == x86_64 ]] && launcher=(python3 -c "$xstate_off_launcher")
    timeout --kill-after=10 "${DAQLINK_UML_TIMEOUT:-600}" \
        "${launcher[@]}" "$uml" "mem=${DAQLINK_UML_MEM:-1G}" "umid=$umid" "uml_dir=$work" \
        rootfstype=hostfs rw quiet "init=$work/init.sh" con=null \
        "GLIBC_TUNABLES=glibc.cpu.hwcaps=$glibc_no_avx" \
        </dev/null >"$work/boot.log" 2>&1 || status=$?

    [[ -f $work/stdout ]] && cat "$work/stdout"
    [[ -f $work/stderr ]] && cat "$work/stderr" >&2
    if [[ -f $work/rc ]]; then
        exit "$(<"$work/rc")"
    fi
    echo "$prog: the guest ended without an exit code (linux.uml status $status); boot log:" >&2
    tail -n 40 "$work/boot.log" >&2 || true
    ((status == 124)) && exit 124
    exit 125
}

((do_install)) && install_packages
# --install alone only installs; interfaces are made when asked for (--count/--iface/--run).
((do_install && !have_run && !explicit_ifaces)) && exit 0

if [[ -z $mode ]]; then
    if kernel_has_can; then mode=host; else mode=uml; fi
fi
case $mode in
    host)
        host_setup
        if ((have_run)); then
            status=0
            "${cmd[@]}" || status=$?
            exit "$status"
        fi
        echo "$prog: ${ifaces[*]} up on the host" >&2
        ;;
    uml)
        if ((have_run)); then uml_run; fi
        cat >&2 <<EOF
$prog: this kernel has no SocketCAN, so ${ifaces[*]} can only exist inside a User-Mode-Linux
guest, which lives as long as one command. Run the command through the guest, e.g.:
  $0 --run -- candump -l ${ifaces[0]}
  $0 --count 2 --run -- ./my-test.sh
EOF
        ;;
    *) die "--mode must be host or uml" ;;
esac
