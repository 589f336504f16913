# Free loopback ports for the shell suites that start servers. Source it; POSIX sh.
#   free_port           a port the kernel has free now
#   free_cluster_port   a free port whose Redis Cluster bus port (the port + 10000) is free too

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

free_cluster_port() {
    python3 -c '
import random, socket
while True:
    p = random.randint(20000, 45000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
    except OSError:
        continue
    print(p); break'
}
