"""zc.asynchronous: persistent jobs, run later, anywhere the database reaches.

A Python 3 revival of zc.async.  Importing the package has no side effects:
it writes no file, installs no reactor and registers no adapter.  Call
``zc.asynchronous.configure.base()`` to register the adapters, and
``zc.asynchronous.configure.start(db)`` to run a dispatcher.
"""
