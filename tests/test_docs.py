"""Run the tutorials in docs/ as doctests.

Each file runs as one doctest, in a fresh folder, with globals that are
the namespace of a module ``zc.asynchronous.doctest_docs`` (so that the
functions and classes a tutorial defines can be stored in the ZODB), and
with a clean component registry.  The files carry their own ELLIPSIS and
NORMALIZE_WHITESPACE directives where they need them.
"""
import doctest
import importlib
import pathlib

import pytest
import transaction
import ZODB
import zope.testing.module

import zc.asynchronous.dispatcher

DOCS = pathlib.Path(__file__).resolve().parent.parent / 'docs'
DOC_FILES = sorted(DOCS.glob('*.rst'))
MODULE_NAME = 'zc.asynchronous.doctest_docs'


def run_doc(path):
    importlib.import_module('zc.asynchronous')
    text = path.read_text(encoding='utf-8')
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, path.name, str(path), 0)
    zope.testing.module.setUp(test, MODULE_NAME)
    runner = doctest.DocTestRunner(optionflags=doctest.REPORT_NDIFF)
    report = []
    try:
        runner.run(test, out=report.append, clear_globs=False)
    finally:
        transaction.abort()
        # Close what a failing document left open.  (Look at types only:
        # touching a ghost of a closed connection would try to load it.)
        for value in list(test.globs.values()):
            if isinstance(value, zc.asynchronous.dispatcher.Dispatcher):
                value.stop()
        for value in list(test.globs.values()):
            if isinstance(value, ZODB.DB):
                value.close()
        zope.testing.module.tearDown(test)
        test.globs.clear()
    return runner.failures, runner.tries, ''.join(report)


@pytest.mark.parametrize('path', DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_doc(path):
    failures, tries, report = run_doc(path)
    assert tries > 0, '%s has no examples' % path.name
    assert failures == 0, report
