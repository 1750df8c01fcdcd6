"""The founding spec: the seed's job doctest, ported to Python 3.

It lives in ../shared/acceptance beside the checkout and runs with that
folder's own parser (footnotes run where they are referenced) and fixture.
Without ../shared it is skipped, except under CI, where its absence is an
error.
"""
import doctest
import importlib.util
import os
import pathlib

import pytest

ACCEPTANCE = (pathlib.Path(__file__).resolve().parent.parent.parent
              / 'shared' / 'acceptance')
RUNNER = ACCEPTANCE / 'run_acceptance.py'
SEED = ACCEPTANCE / 'seed_job.txt'
EXPECTED_EXAMPLES = 289


def _load_runner():
    spec = importlib.util.spec_from_file_location('run_acceptance', RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_job_doctest():
    if not RUNNER.exists():
        if os.environ.get('CI', '').lower() in ('1', 'true', 'yes'):
            pytest.fail('CI is set but %s is missing' % RUNNER)
        pytest.skip('../shared/acceptance is not beside this checkout')
    ra = _load_runner()
    text = SEED.read_text(encoding='utf-8')
    test = ra.FootnoteParser().get_doctest(
        text, {'__file__': str(SEED)}, SEED.name, str(SEED), 0)
    assert len(test.examples) == EXPECTED_EXAMPLES
    runner = doctest.DocTestRunner(optionflags=0)
    fixture = ra.Fixture()
    report = []
    fixture.set_up(test)
    try:
        result = runner.run(test, out=report.append, clear_globs=False)
    finally:
        errors = fixture.tear_down(test)
        test.globs.clear()
    assert not errors, errors
    assert result.failed == 0, ''.join(report)
    assert result.attempted == EXPECTED_EXAMPLES
