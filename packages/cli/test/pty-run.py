"""Runs a command on a pseudo-terminal (stdin, stdout and stderr a TTY, 100 columns) and prints
everything it wrote, as bytes. With --interrupt-on TEXT, types Ctrl-C (the terminal sends SIGINT)
once TEXT has appeared in the output. Exits with the command's exit code (128 + N for signal N).

    python3 pty-run.py [--interrupt-on TEXT] -- COMMAND ARGS...
"""
import fcntl
import os
import pty
import struct
import sys
import termios

args = sys.argv[1:]
interrupt_on = None
if args[:1] == ["--interrupt-on"]:
    interrupt_on = args[1].encode()
    args = args[2:]
if args[:1] == ["--"]:
    args = args[1:]

pid, fd = pty.fork()
if pid == 0:
    os.execvp(args[0], args)

fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
out = b""
sent = False
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # EIO: the command has closed the terminal
        break
    if not chunk:
        break
    out += chunk
    if interrupt_on is not None and not sent and interrupt_on in out:
        os.write(fd, b"\x03")
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.stdout.flush()
if interrupt_on is not None and not sent:
    sys.stderr.write("pty-run: never saw %r\n" % interrupt_on.decode())
    sys.exit(99)
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
