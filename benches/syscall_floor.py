# The syscall floor of fan-out on this machine (issue 11): the least a server can spend per
# player per tick when every player gets one small frame and sends one input per tick.
#
# A "server" process pinned to CPU 0 writes one SIZE-byte frame per socket per tick (30 Hz,
# 8 s) to N loopback TCP connections and reads one input from each; a "client" process
# pinned to CPU 1 reads the frames with epoll and answers each with a 24-byte input (with
# INPUT=0 it only reads), like the bots. Prints the server's kernel (system) and user time
# per socket per tick: the kernel figure is what the syscalls alone cost, with no runtime.
#
# Usage: python3 benches/syscall_floor.py N SIZE [INPUT]   e.g. 1000 230 1
# Only ever uses 127.0.0.1; stops by itself after 8 s (the client after 11 s).
import os, socket, select, sys, time
N = int(sys.argv[1]); SIZE = int(sys.argv[2]); RATE = 30; SECS = 8
INPUT = bool(int(sys.argv[3])) if len(sys.argv) > 3 else True
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4096); port = ls.getsockname()[1]
pid = os.fork()
if pid == 0:
    os.sched_setaffinity(0, {1})
    cs = []
    for _ in range(N):
        c = socket.create_connection(("127.0.0.1", port)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); c.setblocking(False); cs.append(c)
    ep = select.epoll(); fds = {c.fileno(): c for c in cs}
    for c in cs: ep.register(c.fileno(), select.EPOLLIN)
    end = time.time() + SECS + 3
    while time.time() < end:
        for fd, _ in ep.poll(0.1):
            c = fds[fd]
            try:
                if not c.recv(65536): ep.unregister(fd); continue
            except BlockingIOError: continue
            except OSError: ep.unregister(fd); continue
            if INPUT: c.send(b"x" * 24)
    os._exit(0)
os.sched_setaffinity(0, {0})
ss = []
for _ in range(N):
    s, _ = ls.accept(); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); s.setblocking(False); ss.append(s)
frame = b"y" * SIZE
t0 = os.times(); ticks = 0; start = time.time()
while time.time() - start < SECS:
    for s in ss:
        s.send(frame)
        try: s.recv(4096)
        except BlockingIOError: pass
    ticks += 1
    time.sleep(max(0, start + ticks / RATE - time.time()))
t1 = os.times()
print(f"n={N} size={SIZE} input={INPUT} sys_us_per_sock_tick={(t1.system - t0.system) / (N * ticks) * 1e6:.2f} user_us={(t1.user - t0.user) / (N * ticks) * 1e6:.2f}")
for s in ss: s.close()
os.waitpid(pid, 0)
