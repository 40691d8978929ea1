#!/bin/busybox sh
# PID 1 of virtio-lab's real guest (sim/linux/prepare.ts puts it in the initramfs as /init).
# It loads the virtio modules in dependency order, brings up networking, runs the test
# program a run appended as /vlab/run.sh, and stops the machine (QEMU runs with -no-reboot,
# so "reboot -f" ends it). Every stage prints a VLAB-* marker on the serial console; the
# launcher (sim/linux/qemu.ts) waits for them. Kernel command line parameters read here:
#   vlab.ip=ADDR/PREFIX   address for eth0 (no address: eth0 is left down)
#   vlab.mac=MAC          only used to pick the interface when there are several
#   vlab.shell=1          after the run, start a shell on the console instead of stopping
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null
export PATH=/vlab:/bin:/sbin:/usr/bin:/usr/sbin
echo "VLAB-INIT-START kernel=$(uname -r)"

param() {
  for word in $(cat /proc/cmdline); do
    case "$word" in
      "vlab.$1="*) echo "${word#*=}"; return 0 ;;
    esac
  done
  return 1
}

failed=""
for m in $(cat /lib/modules/order); do
  if ! insmod "/lib/modules/$m.ko"; then
    echo "VLAB-MODULE-FAIL $m"
    failed="$failed $m"
  fi
done
[ -z "$failed" ] && echo "VLAB-MODULES-OK $(cat /lib/modules/order | tr '\n' ' ')"

ip link set lo up
addr=$(param ip)
if [ -n "$addr" ]; then
  mac=$(param mac)
  dev=""
  tries=0
  while [ -z "$dev" ] && [ $tries -lt 50 ]; do
    for d in /sys/class/net/*; do
      name=${d##*/}
      [ "$name" = lo ] && continue
      if [ -z "$mac" ] || [ "$(cat "$d/address")" = "$mac" ]; then dev=$name; break; fi
    done
    [ -z "$dev" ] && { sleep 0.1; tries=$((tries + 1)); }
  done
  if [ -z "$dev" ]; then
    echo "VLAB-NET-FAIL no network interface appeared"
  else
    ip addr add "$addr" dev "$dev" && ip link set "$dev" up &&
      echo "VLAB-NET-UP dev=$dev addr=$addr mac=$(cat /sys/class/net/$dev/address)"
  fi
fi

if [ -x /vlab/run.sh ]; then
  echo "VLAB-RUN-START"
  /vlab/run.sh
  echo "VLAB-RUN-EXIT $?"
fi
if [ "$(param shell)" = 1 ]; then
  echo "VLAB-SHELL"
  setsid cttyhack sh
fi
echo "VLAB-HALT"
sync
reboot -f
