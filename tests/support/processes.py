"""Start ZEO servers and dispatcher processes for tests, and stop them.

Everything listens on 127.0.0.1 only, every wait is bounded, and every
process is killed by its pid when the test ends.
"""
import os
import pathlib
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent

ZEO_SERVER = r'''
import sys, ZEO
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
addr, stop = ZEO.server(path=sys.argv[1], port=port)  # binds 127.0.0.1
print(addr[1], flush=True)
sys.stdin.read()
stop()
'''


class Processes:
    """Tracks the processes a test starts; ``stop_all()`` kills them."""

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)
        self.procs = []

    def env(self, **extra):
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            [str(HERE.parent)] + [p for p in [env.get('PYTHONPATH')] if p])
        env.update(extra)
        return env

    def start_zeo(self, name='Data.fs', timeout=20, port=0):
        """Start a ZEO server (on a free port by default).

        Returns ``('127.0.0.1', port)``; the process is ``self.zeo``.
        """
        proc = subprocess.Popen(
            [sys.executable, '-c', ZEO_SERVER, str(self.folder / name),
             str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=self.folder, env=self.env())
        self.procs.append(proc)
        self.zeo = proc
        line = _readline(proc, timeout)
        return ('127.0.0.1', int(line))

    def start_dispatcher(self, addr, name, timeout=20, **options):
        """Start ``dispatcher_main.py`` against the ZEO server at ``addr``.

        Returns the process once its dispatcher has polled once.
        """
        folder = self.folder / name
        folder.mkdir(exist_ok=True)
        args = [sys.executable, '-m', 'support.dispatcher_main',
                '%s:%d' % addr]
        for key, value in options.items():
            args.append('--%s=%s' % (key.replace('_', '-'), value))
        log = open(folder / 'log.txt', 'w')
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=log, text=True,
            cwd=folder, env=self.env(ZC_ASYNC_UUID=str(folder / 'uuid.txt')))
        proc.log_path = folder / 'log.txt'
        self.procs.append(proc)
        line = _readline(proc, timeout)
        assert line.startswith('ready '), line
        proc.uuid = line.split()[1]
        return proc

    def kill(self, proc, sig=signal.SIGKILL):
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        proc.wait(10)

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                    proc.wait(10)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    pass
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        self.procs = []


def _readline(proc, timeout):
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError('process %s said nothing in %s s'
                                 % (proc.args, timeout))
    line = proc.stdout.readline().strip()
    if not line:
        raise AssertionError('process %s ended (status %s)'
                             % (proc.args, proc.wait(5)))
    return line


def wait_until(condition, seconds, message):
    """Poll ``condition`` until true; AssertionError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)
