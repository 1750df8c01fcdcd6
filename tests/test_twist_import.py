"""Importing zc.twist has no side effects, and works under python -I."""
import os
import subprocess
import sys
import textwrap


def run(code, cwd, *flags):
    return subprocess.run(
        [sys.executable, *flags, '-c', textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, cwd=str(cwd))


def test_isolated_mode_import(tmp_path):
    proc = run('import zc.twist, zc.asynchronous; print("ok")',
               tmp_path, '-I')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'ok\n'


def test_import_installs_no_reactor_and_registers_nothing(tmp_path):
    proc = run('''
        import sys
        import zc.twist
        import zope.component
        assert 'twisted.internet.reactor' not in sys.modules, 'reactor'
        gsm = zope.component.getGlobalSiteManager()
        assert list(gsm.registeredAdapters()) == [], 'adapters'
        assert list(gsm.registeredUtilities()) == [], 'utilities'
        print('ok')
    ''', tmp_path, '-I')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'ok\n'
    assert os.listdir(tmp_path) == []      # no file written either


def test_using_zc_twist_without_waiting_needs_no_reactor(tmp_path):
    proc = run('''
        import sys
        import persistent, transaction, ZODB
        import zc.twist
        assert zc.twist.Partial(max, 1, 2)() == 2
        db = ZODB.DB(None)
        conn = db.open()
        conn.root()['x'] = persistent.mapping.PersistentMapping()
        transaction.commit()
        results = []
        zc.twist.Partial(conn.root()['x'].setdefault, 'k', 1)().addBoth(
            results.append)
        assert results == [1], results
        zc.twist.get_connection(db).addCallback(lambda c: c.close())
        assert 'twisted.internet.reactor' not in sys.modules, 'reactor'
        print('ok')
    ''', tmp_path, '-I')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'ok\n'


def test_get_reactor_defaults_to_the_global_reactor(tmp_path):
    proc = run('''
        import sys
        import zc.twist
        partial = zc.twist.Partial(len)
        assert 'twisted.internet.reactor' not in sys.modules
        found = partial.getReactor()
        from twisted.internet import reactor
        assert found is reactor
        print('ok')
    ''', tmp_path, '-I')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'ok\n'
