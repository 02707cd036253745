#!/usr/bin/env python3
"""A point-to-point IP link between two network namespaces with one-way delay, random loss and a rate
cap behind a tail-drop queue, done in user space over two TUN devices: this kernel has no netem.

  wanlink.py NS_A NS_B --dev-a wlA0 --dev-b wlB0 [--delay-ms 25] [--loss 0.005] [--rate-mbit 0]
             [--queue-ms 100] [--prefix 10.203.0]

NS_A gets PREFIX.1 on DEV_A, NS_B gets PREFIX.2 on DEV_B (a /32 peer link). The delay applies in each
direction (RTT = 2 x delay), and so do loss and rate. Prints one "wanlink up: ..." line once both ends
are configured; runs until SIGTERM or SIGINT, then prints its drop counts on stderr. Used by
bench/link.mjs and test/support/WanLink.ts.
"""
import argparse
import collections
import fcntl
import json
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
# Packets read from one device before the other gets a turn, so neither direction starves.
BATCH = 64


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def ip(*args):
    subprocess.run(["ip", *args], check=True)


def overflowed(ns, dev):
    """Packets the kernel dropped because the device's own queue was full: this forwarder fell behind."""
    shown = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev], capture_output=True)
    try:
        return json.loads(shown.stdout)[0]["stats64"]["tx"]["dropped"]
    except (ValueError, LookupError):
        return 0


class Direction:
    """Packets from one device to the other: a tail-drop queue in front of a wire of the given rate,
    then a delay line. Both are FIFO (constant delay, one wire), so a deque holds them in send order."""

    def __init__(self, src, dst, args):
        self.src, self.dst = src, dst
        self.loss = args.loss
        self.delay = args.delay_ms / 1000
        self.byte_time = 8 / (args.rate_mbit * 1e6) if args.rate_mbit > 0 else 0
        self.queue_limit = args.queue_ms / 1000
        self.wire_free = 0.0  # when the wire has sent everything queued so far
        self.line = collections.deque()  # (due time, packet)
        self.lost = self.dropped = 0

    def read(self, now):
        for _ in range(BATCH):
            try:
                packet = os.read(self.src, 65535)
            except BlockingIOError:
                return
            if self.loss and random.random() < self.loss:
                self.lost += 1
                continue
            sent = now
            if self.byte_time:
                start = max(now, self.wire_free)
                # The queue in front of the wire is full: the packet is lost, as at a real bottleneck.
                if start - now > self.queue_limit:
                    self.dropped += 1
                    continue
                sent = self.wire_free = start + len(packet) * self.byte_time
            self.line.append((sent + self.delay, packet))

    def write(self, now):
        line = self.line
        while line and line[0][0] <= now:
            try:
                os.write(self.dst, line.popleft()[1])
            except OSError:
                pass  # The device's own queue is full or it went down: a lost packet, as on a wire.


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ns_a")
    p.add_argument("ns_b")
    p.add_argument("--dev-a", required=True, help="device in NS_A; unique on the machine while it runs")
    p.add_argument("--dev-b", required=True, help="device in NS_B; unique on the machine while it runs")
    p.add_argument("--delay-ms", type=float, default=25.0, help="one way")
    p.add_argument("--loss", type=float, default=0.0, help="drop probability per packet, 0..1")
    p.add_argument("--rate-mbit", type=float, default=0.0, help="per direction, 0 = unlimited")
    p.add_argument("--queue-ms", type=float, default=100.0, help="tail-drop queue limit at the rate cap")
    p.add_argument("--prefix", default="10.203.0", help="first three octets of the link's addresses")
    args = p.parse_args()

    # SIGTERM ends like Ctrl+C, through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The devices are created here, in the root namespace, then moved: hence names unique per instance.
    # They are not persistent, so the kernel deletes them when their descriptors close, even on SIGKILL.
    fd_a, fd_b = open_tun(args.dev_a), open_tun(args.dev_b)
    directions = {fd_a: Direction(fd_a, fd_b, args), fd_b: Direction(fd_b, fd_a, args)}
    try:
        for dev, ns, me, peer in ((args.dev_a, args.ns_a, ".1", ".2"), (args.dev_b, args.ns_b, ".2", ".1")):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "link", "set", dev, "addrgenmode", "none")
            ip("-n", ns, "addr", "add", args.prefix + me, "peer", args.prefix + peer, "dev", dev)
            ip("-n", ns, "link", "set", dev, "mtu", "1500", "up")
        print(
            f"wanlink up: {args.ns_a} {args.prefix}.1 ({args.dev_a}) <-> {args.ns_b} {args.prefix}.2 "
            f"({args.dev_b}), delay {args.delay_ms:g} ms each way, loss {args.loss:g}, "
            f"rate {f'{args.rate_mbit:g} Mbit/s' if args.rate_mbit > 0 else 'unlimited'}, queue {args.queue_ms:g} ms",
            flush=True,
        )
        fds = list(directions)
        while True:
            due = [d.line[0][0] for d in directions.values() if d.line]
            now = time.monotonic()
            ready, _, _ = select.select(fds, [], [], max(0, min(due) - now) if due else None)
            now = time.monotonic()
            for fd in ready:
                directions[fd].read(now)
            for d in directions.values():
                d.write(now)
    except KeyboardInterrupt:
        pass
    finally:
        # What the bottleneck did, for whoever reads why a transfer was slow.
        lost = sum(d.lost for d in directions.values())
        dropped = sum(d.dropped for d in directions.values())
        behind = overflowed(args.ns_a, args.dev_a) + overflowed(args.ns_b, args.dev_b)
        print(f"wanlink down: {lost} packets lost at random, {dropped} dropped by the full queue, "
              f"{behind} by the devices while the forwarder fell behind", file=sys.stderr)
        os.close(fd_a)
        os.close(fd_b)


if __name__ == "__main__":
    main()
